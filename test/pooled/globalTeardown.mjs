import { register } from "tsx/esm/api";

register();
const { default: teardown } = await import("./pooler.teardown.ts");
export default teardown;
