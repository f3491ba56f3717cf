// The search page quotes each page's text under its result, where MathJax does not run: a formula would read as
// raw TeX (\mathrm{softmax}(QK^\top/\sqrt{D})). Before Sphinx's search takes a page's text, each formula is
// written in plain Unicode instead (softmax(QKᵀ/√D)): best effort, for a two-line summary.
(() => {
  const SUB = { 0: "₀", 1: "₁", 2: "₂", 3: "₃", 4: "₄", 5: "₅", 6: "₆", 7: "₇", 8: "₈", 9: "₉" };
  const SUP = { 0: "⁰", 1: "¹", 2: "²", 3: "³", 4: "⁴", 5: "⁵", 6: "⁶", 7: "⁷", 8: "⁸", 9: "⁹", "-": "⁻" };
  const SYMBOLS = {
    alpha: "α", beta: "β", gamma: "γ", delta: "δ", epsilon: "ε", varepsilon: "ε", eta: "η", theta: "θ",
    lambda: "λ", mu: "μ", pi: "π", rho: "ρ", sigma: "σ", tau: "τ", phi: "φ", varphi: "φ", omega: "ω",
    Gamma: "Γ", Delta: "Δ", Theta: "Θ", Lambda: "Λ", Sigma: "Σ", Phi: "Φ", Omega: "Ω",
    le: "≤", leq: "≤", ge: "≥", geq: "≥", ne: "≠", neq: "≠", approx: "≈", sim: "∼", in: "∈", infty: "∞",
    times: "×", cdot: "·", dots: "…", ldots: "…", cdots: "⋯", to: "→", rightarrow: "→", leftarrow: "←",
    sum: "Σ", prod: "Π", pm: "±", mid: "|", top: "ᵀ", quad: " ", qquad: " ", left: "", right: "",
  };
  const plain = (tex) => {
    let text = tex.trim().replace(/^\\[([]|\\[)\]]$/g, "").replace(/^\$\$?|\$\$?$/g, "");
    text = text.replace(/\\(?:begin|end)\{[^{}]*\}/g, "");
    for (let i = 0; i < 3; i++) {
      text = text
        .replace(/\\(?:mathrm|text|operatorname|mathbf|mathit|mathcal|boldsymbol)\{([^{}]*)\}/g, "$1")
        .replace(/\\frac\{([^{}]*)\}\{([^{}]*)\}/g, "($1)/($2)")
        .replace(/\\sqrt\{(\w)\}/g, "√$1")
        .replace(/\\sqrt\{([^{}]*)\}/g, "√($1)");
    }
    text = text
      .replace(/\^\\top\b/g, "ᵀ")
      .replace(/\^\{?(-?\d+)\}?/g, (_, d) => [...d].map((c) => SUP[c]).join(""))
      .replace(/_\{?(\d+)\}?/g, (_, d) => [...d].map((c) => SUB[c]).join(""))
      .replace(/\\[,;:! ]/g, " ")
      .replace(/\\([{}])/g, "$1")
      .replace(/\\([A-Za-z]+)/g, (_, name) => (name in SYMBOLS ? SYMBOLS[name] : name))
      .replace(/[{}]/g, "");
    return text.replace(/\s+/g, " ");
  };
  document.addEventListener("DOMContentLoaded", () => {
    if (typeof Search === "undefined") return; // a page without Sphinx's search
    const htmlToText = Search.htmlToText;
    Search.htmlToText = (htmlString, anchor) => {
      const page = new DOMParser().parseFromString(htmlString, "text/html");
      page.querySelectorAll(".math").forEach((el) => {
        el.textContent = plain(el.textContent);
      });
      return htmlToText(page.documentElement.outerHTML, anchor);
    };
  });
})();
