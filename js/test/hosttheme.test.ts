// @vitest-environment happy-dom
import { afterEach, describe, expect, it } from "vitest";
import { followHostTheme, hostTheme } from "../hosttheme";

afterEach(() => {
  document.documentElement.removeAttribute("theme");
  document.documentElement.className = "";
  document.body.className = "";
  for (const a of ["data-jp-theme-light", "data-theme"]) document.body.removeAttribute(a);
});

describe("hostTheme", () => {
  it("reads each host's own signal", () => {
    expect(hostTheme()).toBe(null);
    document.body.setAttribute("data-jp-theme-light", "false"); // JupyterLab / Notebook 7
    expect(hostTheme()).toBe("dark");
    document.body.setAttribute("data-jp-theme-light", "true");
    expect(hostTheme()).toBe("light");
    document.body.removeAttribute("data-jp-theme-light");
    document.body.className = "vscode-dark";
    expect(hostTheme()).toBe("dark");
    document.body.className = "";
    document.documentElement.setAttribute("theme", "dark"); // Colab
    expect(hostTheme()).toBe("dark");
    document.documentElement.removeAttribute("theme");
    document.body.className = "dark"; // marimo
    expect(hostTheme()).toBe("dark");
    document.body.className = "";
    document.documentElement.className = "dark-theme";
    expect(hostTheme()).toBe("dark");
  });

  it("follows a switch while the view is mounted", async () => {
    const el = document.createElement("div");
    const stop = followHostTheme(el);
    expect(el.dataset.mwTheme).toBeUndefined();
    document.documentElement.setAttribute("theme", "dark");
    await new Promise((r) => setTimeout(r, 0));
    expect(el.dataset.mwTheme).toBe("dark");
    document.documentElement.setAttribute("theme", "light");
    await new Promise((r) => setTimeout(r, 0));
    expect(el.dataset.mwTheme).toBe("light");
    stop();
    document.documentElement.setAttribute("theme", "dark");
    await new Promise((r) => setTimeout(r, 0));
    expect(el.dataset.mwTheme).toBe("light");
  });
});
