import { register } from "tsx/esm/api";

register();
const { default: teardown } = await import("./cluster.teardown.ts");
export default teardown;
