// Loaded with `node --import <this file>` before every `.ts` step (plan.ts above all). It makes
// TypeScript run on Node 20, which cannot strip types itself, and makes `import ... from
// "tsup-flow"` resolve to this very installation of tsup, whether or not the user's project has
// tsup-flow among its dependencies (npx and global installs leave it out). A plan must talk to the
// director that runs it, so using this copy of the API is also the only correct choice.
import { register } from "node:module";
import { register as registerTypeScript } from "tsx/esm/api";

registerTypeScript();
// Hooks registered later run first: ours sees "tsup-flow" before tsx's resolver does.
register("./resolve-hook.js", import.meta.url, {
  data: { apiUrl: new URL("./index.js", import.meta.url).href },
});
