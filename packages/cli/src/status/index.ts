export * from './board.js';
export * from './handler.js';
export { esc, type StatusHealth, type StatusInfo } from './page.js';
