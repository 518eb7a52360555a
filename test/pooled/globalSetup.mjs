// jest loads global setup outside its ESM transform: load the TypeScript through tsx.
import { register } from "tsx/esm/api";

register();
const { default: setup } = await import("./pooler.setup.ts");
export default setup;
