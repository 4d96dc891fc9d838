// The bundled example: number the lines of a limerick, count its words, and run three steps
// in a pool that lets only two of them execute at once.
import { declareStatic, pool, step } from "tsup-flow";

declareStatic("limerick.txt");
pool("test", 2);
step("nl ${inp} > ${out}", { inp: "limerick.txt", out: "numbered.txt" });
step("wc -w < ${inp} > ${out}", { inp: "numbered.txt", out: "words.txt" });
for (const c of ["A", "B", "C"]) step(`sleep 0.1; echo ${c}`, { pool: "test" });
