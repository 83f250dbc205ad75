// Stylesheet text bundled into widget.js (esbuild's "text" loader), injected into each view's root so the
// widget needs no _css trait and no network access.
import uplotCss from "uplot/dist/uPlot.min.css";
import ownCss from "./styles.css";

export default `${uplotCss}\n${ownCss}`;
