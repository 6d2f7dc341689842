export * from './datatype.js';
export * from './shape.js';
export * from './errors.js';
export * from './tensor.js';
export * from './inference.js';
export * from './metadata.js';
export * from './logger.js';
export * from './float16.js';
