/**
 * TypeDoc plugin: a config key declared in a zod shape (`budget: durationSetting(...).describe('...')`)
 * gets the `.describe()` text as its documentation when it has no TSDoc comment of its own. The
 * config schema's descriptions (the ones editors show from schema/mxguard.schema.json) are then
 * the API reference's too, written once, and `notDocumented` holds a key without one to account.
 */
import { Comment, Converter } from 'typedoc';
import ts from 'typescript';

/**
 * The text of the outermost `.describe('text')` in a call chain such as
 * `z.string().describe('x').optional()`, following a schema named by a variable.
 */
function describedAs(node, checker, depth = 0) {
  let n = node;
  while (n) {
    if (ts.isIdentifier(n)) {
      // `greylist: greylistStoreSchema`: the describe() is where the schema is declared.
      let symbol = checker.getSymbolAtLocation(n);
      if (symbol && symbol.flags & ts.SymbolFlags.Alias) symbol = checker.getAliasedSymbol(symbol);
      const value = symbol?.valueDeclaration;
      if (depth > 3 || !value || !ts.isVariableDeclaration(value) || !value.initializer) return undefined;
      return describedAs(value.initializer, checker, depth + 1);
    }
    if (ts.isCallExpression(n)) {
      const callee = n.expression;
      if (ts.isPropertyAccessExpression(callee)) {
        const arg = n.arguments[0];
        if (callee.name.text === 'describe' && arg && ts.isStringLiteralLike(arg)) return arg.text;
        n = callee.expression;
        continue;
      }
      return undefined;
    }
    if (ts.isParenthesizedExpression(n) || ts.isAsExpression(n) || ts.isSatisfiesExpression(n)) {
      n = n.expression;
      continue;
    }
    return undefined;
  }
  return undefined;
}

/** @param {import('typedoc').Application} app */
export function load(app) {
  app.converter.on(Converter.EVENT_CREATE_DECLARATION, (context, reflection) => {
    if (reflection.hasComment()) return;
    const symbol = context.getSymbolFromReflection(reflection);
    for (const decl of symbol?.declarations ?? []) {
      let initializer;
      if (ts.isPropertyAssignment(decl)) initializer = decl.initializer;
      else if (ts.isShorthandPropertyAssignment(decl)) {
        // `{ exempt }`: the describe() is on the variable's initializer.
        const value = context.checker.getShorthandAssignmentValueSymbol(decl)?.valueDeclaration;
        if (value && ts.isVariableDeclaration(value)) initializer = value.initializer;
      }
      const text = initializer && describedAs(initializer, context.checker);
      if (text) {
        reflection.comment = new Comment([{ kind: 'text', text }]);
        return;
      }
    }
  });
}
