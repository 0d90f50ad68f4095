// The demo moved to services/demo/ (the server imports nothing from examples/);
// this re-export keeps older imports working.
export { playIncident, runDemo, type Http, type IncidentResult } from '../services/demo/index.ts';
