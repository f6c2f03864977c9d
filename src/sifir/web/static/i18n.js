// The page's languages: every sentence comes from the server's tables (GET /api/messages), the
// same ones the command line speaks from. The language is ?lang=xx if given, else the browser's
// first language the server knows, else English; the switch in the header changes it in place
// and keeps it in the URL, so a shared link opens in the same language.
"use strict";

window.sifirI18n = (() => {
  let table = {};
  let lang = "en";
  let known = ["en"];
  const listeners = [];

  function pick(languages) {
    const asked = new URLSearchParams(location.search).get("lang");
    if (asked && languages.includes(asked)) return asked;
    for (const l of navigator.languages || [navigator.language || "en"]) {
      const code = String(l).toLowerCase().split("-")[0];
      if (languages.includes(code)) return code;
    }
    return "en";
  }

  // "{name}" placeholders, as in the Python tables (the page's sentences use no format specs)
  function t(key, values = {}) {
    const template = table[key] ?? key;
    return template.replace(/\{(\w+)\}/g, (_, name) => (name in values ? String(values[name]) : `{${name}}`));
  }

  // numbers in the reader's convention: 98.5 in English, 98,5 in Turkish
  function number(value, digits = 0) {
    return Number(value).toLocaleString(lang, { minimumFractionDigits: digits, maximumFractionDigits: digits });
  }

  function apply(root = document) {
    for (const el of root.querySelectorAll("[data-i18n]")) el.textContent = t(el.dataset.i18n);
    for (const el of root.querySelectorAll("[data-i18n-attr]")) {
      for (const pair of el.dataset.i18nAttr.split(";")) {
        const [attr, key] = pair.split(":");
        if (attr && key) el.setAttribute(attr.trim(), t(key.trim()));
      }
    }
    document.documentElement.lang = lang;
    if (table.title) document.title = table.title;
  }

  async function load(wanted) {
    const response = await fetch(`/api/messages?lang=${encodeURIComponent(wanted)}`);
    if (!response.ok) throw new Error(`messages: ${response.status}`);
    const answer = await response.json();
    table = answer.messages;
    lang = answer.lang;
    known = answer.languages;
  }

  function buildSwitch() {
    const select = document.getElementById("lang");
    if (!select) return;
    select.textContent = "";
    for (const code of known) {
      const option = document.createElement("option");
      option.value = code;
      option.textContent = code.toUpperCase();
      option.selected = code === lang;
      select.appendChild(option);
    }
    select.onchange = () => setLanguage(select.value);
  }

  async function setLanguage(code) {
    await load(code);
    const url = new URL(location.href);
    url.searchParams.set("lang", lang);
    history.replaceState(null, "", url);
    apply();
    buildSwitch();
    listeners.forEach((f) => f(lang));
  }

  const ready = (async () => {
    try {
      await load("en");                   // learn which languages there are
      const wanted = pick(known);
      if (wanted !== "en") await load(wanted);
    } catch (err) {
      table = {};                          // the page still works, showing keys' English fallbacks
    }
    apply();
    buildSwitch();
    return lang;
  })();

  return {
    ready, t, number, apply, setLanguage,
    get lang() { return lang; },
    onChange(f) { listeners.push(f); },
  };
})();
