/** Postfix-format lookup tables (regexp, pcre, cidr, hash source, sqlgrey) and table files that follow their file. */

export * from './file.js';
export * from './postfix.js';
