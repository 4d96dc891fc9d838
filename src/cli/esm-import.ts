// import() for code in the bundle. V8 code that comes from a code cache has lost what Node needs
// to run an import() in it (ERR_VM_DYNAMIC_IMPORT_CALLBACK_MISSING, nodejs/node#43663), so
// launch.ts, an ordinary ES module, hands the bundle an import() of its own through a global.
// Only the terminal UI is imported on demand: ink has top-level await and stays out of the bundle.
type EsmImport = (url: string) => Promise<unknown>;

const KEY = Symbol.for("tsup.esmImport");

export function provideEsmImport(importer: EsmImport): void {
  (globalThis as Record<symbol, unknown>)[KEY] = importer;
}

/** Import the ES module at `url` (absolute: a URL relative to the bundle means nothing here). */
export function esmImport(url: string): Promise<unknown> {
  const importer = (globalThis as Record<symbol, unknown>)[KEY] as EsmImport | undefined;
  return importer ? importer(url) : import(url);
}
