/**
 * Optional peer dependencies: a package one feature needs (ioredis for the Redis stores,
 * smtp-server for the gateway) is loaded when that feature is first used, so that whoever does not
 * use the feature need not install it, and whoever does gets an error that names the package.
 */
import { createRequire } from 'node:module';

/**
 * Loads the optional peer dependency `name` as seen from the module at `parentUrl` (pass
 * `import.meta.url`). When it is not installed, throws an Error naming the package, the feature
 * that needs it and the command that installs it; any other failure is rethrown as it is.
 * Synchronous (`require`): both peers mxguard has are CommonJS packages.
 *
 * @param name the package, as in `npm install <name>`
 * @param feature what needs it, for the message: `'redisStore() of @mxguard/greylist'`
 * @param parentUrl `import.meta.url` of the caller, so resolution starts from the caller's package
 */
export function loadOptionalPeer<T>(name: string, feature: string, parentUrl: string): T {
  try {
    return createRequire(parentUrl)(name) as T;
  } catch (err) {
    const e = err as NodeJS.ErrnoException;
    if (e?.code === 'MODULE_NOT_FOUND' && typeof e.message === 'string' && e.message.includes(`'${name}'`)) {
      throw new Error(
        `${feature} needs the package "${name}", an optional peer dependency that is not installed: npm install ${name}`,
        { cause: err },
      );
    }
    throw err;
  }
}
