// Pools limit how many steps of a kind execute at once (here: two), never how many are skipped.
// Run `tsup -n -w4` twice: the first run starts C only after A or B finished; the second run
// skips all three at once.
import { pool, step } from "tsup-flow";

pool("test", 2);
for (const c of ["A", "B", "C"]) step(`sleep 0.1; echo ${c}`, { pool: "test" });
