import { pino, type Logger } from 'pino';

export type { Logger };

/** JSON logs to stdout; `LOG_LEVEL` is read once by the config, not here. */
export const createLogger = (name: string, level = 'info'): Logger => pino({ name, level });
