import type { VersionPolicy } from '../config/model-config.js';

/**
 * Which of the available version numbers a policy serves (Triton's version_policy). Default:
 * the latest one. Pure.
 */
export function selectVersions(policy: VersionPolicy | undefined, available: readonly number[]): number[] {
  const sorted = [...available].sort((a, b) => a - b);
  if (policy === undefined) return sorted.slice(-1);
  if ('latest' in policy) return sorted.slice(-policy.latest.num_versions);
  if ('all' in policy) return sorted;
  const wanted = new Set(policy.specific.versions);
  return sorted.filter((version) => wanted.has(version));
}
