export * from './assert.js';
export * from './clock.js';
export * from './errors.js';
export * from './limits.js';
export * from './rand.js';
