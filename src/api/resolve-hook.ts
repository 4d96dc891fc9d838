// Module resolution hook (runs on Node's loader thread): the package name of tsup always means the
// API of the tsup that runs the step. See loader.ts for why.
export const PACKAGE_NAME = "tsup-flow";

let apiUrl = "";

export function initialize(data: { apiUrl: string }): void {
  apiUrl = data.apiUrl;
}

type Resolve = (
  specifier: string,
  context: unknown,
) => Promise<{ url: string; shortCircuit?: boolean; format?: string | null }>;

export async function resolve(
  specifier: string,
  context: unknown,
  nextResolve: Resolve,
): Promise<{ url: string; shortCircuit?: boolean; format?: string | null }> {
  if (specifier === PACKAGE_NAME) return { url: apiUrl, shortCircuit: true, format: "module" };
  const resolved = await nextResolve(specifier, context);
  // A plan folder often has no package.json, and then Node would treat plan.ts as CommonJS, where
  // `import` statements and top-level await fail. The user's own TypeScript files are modules.
  if (/\.m?ts$/.test(resolved.url) && resolved.url.startsWith("file:") && !resolved.url.includes("/node_modules/")) {
    return { ...resolved, format: "module" };
  }
  return resolved;
}
