"""``index.html`` of ``cliplens report``: one self-contained page (data, images and script inline; no
network at view time), the best place to read a run.

Per (backbone, dataset) group: the leaderboard (click a column title to sort) with the markers of
``leaderboard.md`` (``†``...: another protocol; ``∅``: constant maps) and its notes (images scored,
thresholds, timing definition, harness overhead, the markers' footnotes); the protocol common to every
run once, each run's differences, its full card behind a ``<details>``; the per-class scores of a chosen
metric (wide tables scroll inside their box); a per-sample browser: image, ground truth, each explainer's
map of the chosen class beside its binarised version (threshold slider) with a legend of hit, false
positive and missed pixels, constant maps named. Then the bar charts (:mod:`.figures`: horizontal,
best first).
"""

from __future__ import annotations

import base64
import html
import io
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from ..results.examples import load_examples
from ..results.files import STATUS_OK
from ..results.protocol_card import card_markers
from .protocol_lines import protocol_lines
from .scores import grouped, higher_is_better, metric_names, metric_title, score
from .table import CONSTANT_MARK, constant_note, group_table


def _png(array: np.ndarray) -> str:
    """uint8 (H, W) or (H, W, 3) -> a ``data:image/png;base64,...`` URI."""
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG", optimize=True)
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def _per_class(result: dict[str, Any]) -> dict[str, dict[str, float]]:
    out: dict[str, dict[str, float]] = {}
    for key, value in (result.get("scores") or {}).items():
        metric, sep, name = key.partition("/class/")
        if sep and "@" not in metric and isinstance(value, (int, float)):
            out.setdefault(metric, {})[name] = float(value)
    return out


def _samples(members: Sequence[dict[str, Any]], run_dir: Path) -> list[dict[str, Any]]:
    """Per example image: the image, each present class's ground truth and each explainer's map (PNG URIs)."""
    loaded = {}
    for r in sorted(members, key=lambda r: r.get("explainer", {}).get("name", "")):
        rel = r.get("examples")
        if r.get("status") == STATUS_OK and rel and (run_dir / rel).is_file():
            loaded[r["explainer"]["name"]] = load_examples(run_dir / rel)
    if not loaded:
        return []
    first, class_names = next(iter(loaded.values()))
    samples = []
    for example in first:
        classes = []
        for cls in example.classes.tolist():
            maps, words = {}, {}
            for name, (examples, _) in loaded.items():
                match = next((e for e in examples if e.index == example.index), None)
                if match is not None and cls in match.classes.tolist():
                    row = match.classes.tolist().index(cls)
                    maps[name] = _png((np.clip(match.maps[row], 0, 1) * 255).round().astype(np.uint8))
                    if match.words is not None:  # text-side explainers: the prompt's words and their scores
                        words[name] = match.words[row]
            truth = (example.mask == cls).astype(np.uint8) * 255
            classes.append({"name": class_names[cls], "truth": _png(truth), "maps": maps, "words": words})
        samples.append(
            {"id": str(example.sample_id), "image": _png(example.image.astype(np.uint8)), "classes": classes}
        )
    return samples


def page_data(results: Sequence[dict[str, Any]], run_dir: Path, figure_files: Sequence[Path]) -> dict[str, Any]:
    """Everything the page shows, as one JSON-able dict."""
    metrics = metric_names(results)
    groups = []
    for (backbone, dataset), members in grouped(results).items():
        runs = []
        marks, _ = card_markers(members)
        for r, mark in zip(members, marks, strict=True):
            timing = r.get("timing") or {}
            constant = constant_note(r) if r.get("status") == STATUS_OK else None
            runs.append(
                {
                    "explainer": r.get("explainer", {}).get("name", "?"),
                    "mark": mark + (CONSTANT_MARK if constant else ""),
                    "constant": constant,
                    "status": r.get("status"),
                    "scores": {m: score(r, m) for m in metrics},
                    "ms": timing.get("explain_ms_per_image"),
                    "ratio": timing.get("explain_to_forward_ratio"),
                    "per_class": _per_class(r),
                    "protocol": protocol_lines(r),
                }
            )
        notes = group_table(members)[2]  # footnotes, protocol markers, constant maps: as in leaderboard.md
        common = [line for line in runs[0]["protocol"] if all(line in run["protocol"] for run in runs[1:])]
        for run in runs:  # what differs from the protocol common to every run of the group
            run["differences"] = [line for line in run["protocol"] if line not in common]
        groups.append(
            {
                "backbone": backbone,
                "dataset": dataset,
                "runs": runs,
                "notes": notes,
                "common_protocol": common,
                "samples": _samples(members, run_dir),
            }
        )
    charts = [
        {"name": p.stem, "src": _png(np.asarray(Image.open(p).convert("RGB")))}
        for p in figure_files
        if p.suffix == ".png" and p.stem.startswith("bar_")
    ]
    return {
        "metrics": [{"key": m, "title": metric_title(m), "higher": higher_is_better(results, m)} for m in metrics],
        "groups": groups,
        "charts": charts,
    }


def write_index(results: Sequence[dict[str, Any]], run_dir: Path, out: Path, figure_files: Sequence[Path] = ()) -> Path:
    """Write ``out/index.html`` and return its path."""
    data = json.dumps(page_data(results, Path(run_dir), figure_files), allow_nan=False, default=str)
    data = data.replace("</", "<\\/")  # never closes the script element early
    path = Path(out) / "index.html"
    path.write_text(
        TEMPLATE.replace("__TITLE__", html.escape("cliplens benchmark")).replace("__DATA__", data), encoding="utf-8"
    )
    return path


TEMPLATE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>__TITLE__</title>
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; img-src data:; style-src 'unsafe-inline'; script-src 'unsafe-inline'">
<style>
body{font-family:"DejaVu Sans","Noto Sans CJK JP",sans-serif;margin:1.2em;color:#222;max-width:1200px}
table{border-collapse:collapse;margin:.5em 0}td,th{border:1px solid #ccc;padding:3px 8px;text-align:right}
th{background:#f2f2f2;cursor:pointer;user-select:none}td:first-child,th:first-child{text-align:left}
th.sorted-asc::after{content:" \\25B2"}th.sorted-desc::after{content:" \\25BC"}
.best{font-weight:bold}.failed{color:#b00}.protocol{font-size:.85em;color:#444;margin:.2em 0 .6em 1em}
.protocol li,.notes li{overflow-wrap:anywhere}.mark{color:#b00;font-weight:bold}
.scroll{overflow-x:auto;max-width:100%}
.browser{display:flex;flex-wrap:wrap;gap:10px}.tile{text-align:center;font-size:.85em}
.pair{display:flex;flex-wrap:nowrap;gap:4px;border:1px solid #ddd;padding:3px}
canvas{border:1px solid #ccc;image-rendering:pixelated;width:160px;max-width:40vw;height:auto}
.legend span{display:inline-block;width:12px;height:12px;border:1px solid #888;margin:0 4px 0 10px;vertical-align:middle}
.charts img{max-width:100%;margin:4px 0}
.words{max-width:160px;font-size:.85em;text-align:left;align-self:center}.words span{padding:0 2px}
</style></head><body>
<h1>cliplens benchmark</h1>
<p>Each map is min–max normalised on its own before scoring; the sample browser shows maps in the jet colour
scale (0 blue … 1 red) beside its binarised version (map ≥ threshold, coloured as in the legend).
Marks: † and other symbols — scored under another protocol than the unmarked rows; ∅ — some maps were
constant (blank); both explained in the notes under each table.</p>
<div id="groups"></div>
<h2>Bar charts</h2><div class="charts" id="charts"></div>
<script id="data" type="application/json">__DATA__</script>
<script>
"use strict";
const DATA = JSON.parse(document.getElementById("data").textContent);
const el = (tag, attrs = {}, text) => { const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, v); if (text !== undefined) e.textContent = text; return e; };
const fmt = v => (v === null || v === undefined) ? "–" : (Math.abs(v) >= 100 ? v.toFixed(0) : v.toFixed(1)).replace(/^-(0(\\.0*)?)$/, "$1");
const HIT = [255, 255, 255], FALSE_POSITIVE = [230, 60, 40], MISSED = [40, 170, 60], OUTSIDE = [0, 0, 0];
function jet(v) { const c = x => Math.max(0, Math.min(1, x)); return [c(1.5 - Math.abs(4 * v - 3)), c(1.5 - Math.abs(4 * v - 2)), c(1.5 - Math.abs(4 * v - 1))].map(x => Math.round(255 * x)); }
function loadImage(src) { return new Promise(ok => { const i = new Image(); i.onload = () => ok(i); i.src = src; }); }
function pixels(img) { const c = document.createElement("canvas"); c.width = img.width; c.height = img.height;
  const g = c.getContext("2d"); g.drawImage(img, 0, 0); return g.getImageData(0, 0, img.width, img.height); }

function shadedWords(words) {  // a text-side explainer's prompt: orange for positive word scores, blue for negative
  const top = Math.max(1e-12, ...words.map(w => Math.abs(w[1]))); const box = el("div", {class: "words"});
  words.forEach(([word, score]) => { const a = Math.min(1, Math.abs(score) / top).toFixed(2);
    box.appendChild(el("span", {style: `background:rgba(${score >= 0 ? "255,140,0" : "30,110,255"},${a})`,
      title: score.toPrecision(3)}, word)); box.append(" "); });
  return box;
}

function leaderboard(group, gi) {
  const table = el("table", {id: `leaderboard-${gi}`, class: "leaderboard"});
  const cols = [{key: "explainer", title: "explainer"}, ...DATA.metrics.map(m => ({key: m.key, title: m.title + (m.higher ? " ↑" : " ↓")})),
                {key: "ms", title: "ms/img"}, {key: "ratio", title: "× fwd"}];
  const head = el("tr"); cols.forEach(c => head.appendChild(el("th", {"data-key": c.key}, c.title)));
  table.appendChild(head);
  const body = el("tbody"); table.appendChild(body);
  const value = (run, key) => key === "explainer" ? run.explainer : key in run.scores ? run.scores[key] : run[key];
  const best = {}; DATA.metrics.forEach(m => { const vals = group.runs.map(r => r.scores[m.key]).filter(v => v !== null);
    if (vals.length) best[m.key] = m.higher ? Math.max(...vals) : Math.min(...vals); });
  let order = {key: DATA.metrics.length ? DATA.metrics[0].key : "explainer", desc: true};
  function render() {
    const runs = [...group.runs].sort((a, b) => { const x = value(a, order.key), y = value(b, order.key);
      if (x === y) return 0; if (x === null || x === undefined) return 1; if (y === null || y === undefined) return -1;
      return (x < y ? -1 : 1) * (order.desc ? -1 : 1); });
    body.replaceChildren(...runs.map(run => { const tr = el("tr", run.status === "ok" ? {} : {class: "failed"});
      cols.forEach(c => { const v = value(run, c.key); const td = c.key === "explainer" ? el("td") : el("td", {}, fmt(v));
        if (c.key === "explainer") { td.appendChild(el("span", {class: "name"}, v));
          if (run.mark) td.appendChild(el("sup", {class: "mark", title: run.constant || "another protocol: see the notes"}, run.mark)); }
        if (c.key in best && v === best[c.key]) td.className = "best"; tr.appendChild(td); }); return tr; }));
    head.querySelectorAll("th").forEach(th => { th.className = th.dataset.key === order.key ? (order.desc ? "sorted-desc" : "sorted-asc") : ""; });
  }
  head.querySelectorAll("th").forEach(th => th.addEventListener("click", () => {
    order = {key: th.dataset.key, desc: order.key === th.dataset.key ? !order.desc : th.dataset.key !== "explainer"}; render(); }));
  render();
  return table;
}

function perClass(group, gi) {
  const box = el("div"); const pick = el("select", {id: `per-class-metric-${gi}`});
  const metrics = DATA.metrics.filter(m => group.runs.some(r => m.key in r.per_class));
  metrics.forEach(m => pick.appendChild(el("option", {value: m.key}, m.title)));
  const table = el("table", {class: "per-class"});
  function render() { const key = pick.value; const names = [...new Set(group.runs.flatMap(r => Object.keys(r.per_class[key] || {})))].sort();
    const head = el("tr"); head.appendChild(el("th", {}, "class")); group.runs.forEach(r => head.appendChild(el("th", {}, r.explainer)));
    table.replaceChildren(head, ...names.map(n => { const tr = el("tr"); tr.appendChild(el("td", {}, n));
      group.runs.forEach(r => tr.appendChild(el("td", {}, fmt((r.per_class[key] || {})[n])))); return tr; })); }
  if (!metrics.length) return box;
  pick.addEventListener("change", render); render();
  const scroll = el("div", {class: "scroll"}); scroll.appendChild(table);
  box.append(el("h3", {}, "Per-class scores "), pick, scroll); return box;
}

function browser(group, gi) {
  const box = el("div"); if (!group.samples.length) return box;
  const sample = el("select", {id: `sample-${gi}`}); group.samples.forEach((s, i) => sample.appendChild(el("option", {value: i}, s.id)));
  const cls = el("select", {id: `class-${gi}`});
  const slider = el("input", {type: "range", min: "0", max: "1", step: "0.05", value: "0.5", id: `threshold-${gi}`});
  const label = el("span", {}, "0.50"); const tiles = el("div", {class: "browser"});
  function fillClasses() { const s = group.samples[sample.value];
    cls.replaceChildren(...s.classes.map((c, i) => el("option", {value: i}, c.name))); }
  async function render() {
    const s = group.samples[sample.value], c = s.classes[cls.value] || s.classes[0], t = parseFloat(slider.value);
    label.textContent = t.toFixed(2);
    const image = pixels(await loadImage(s.image)), truth = pixels(await loadImage(c.truth));
    const canvases = [];
    const tile = (title, paint) => { const cv = el("canvas", {width: image.width, height: image.height, "data-title": title});
      const g = cv.getContext("2d"); const out = g.createImageData(image.width, image.height); paint(out.data); g.putImageData(out, 0, 0);
      const d = el("div", {class: "tile"}); d.append(cv, el("div", {}, title)); canvases.push(d); };
    tile("image", o => o.set(image.data));
    tile(`ground truth: ${c.name}`, o => { for (let i = 0; i < o.length; i += 4) { const on = truth.data[i] > 127;
      for (let k = 0; k < 3; k++) o[i + k] = on ? image.data[i + k] : image.data[i + k] * 0.3; o[i + 3] = 255; } });
    for (const [name, src] of Object.entries(c.maps)) { const map = pixels(await loadImage(src));
      let flat = true; for (let i = 4; i < map.data.length && flat; i += 4) flat = map.data[i] === map.data[0];
      const start = canvases.length;
      tile(`${name}${flat ? " (constant map ∅)" : ""}`, o => { for (let i = 0; i < o.length; i += 4) { const [r, g, b] = jet(map.data[i] / 255);
        o[i] = (image.data[i] + r) / 2; o[i + 1] = (image.data[i + 1] + g) / 2; o[i + 2] = (image.data[i + 2] + b) / 2; o[i + 3] = 255; } });
      tile(`${name} ≥ ${t.toFixed(2)}`, o => { for (let i = 0; i < o.length; i += 4) { const on = map.data[i] / 255 >= t;
        const inside = truth.data[i] > 127; const [r, g, b] = on ? (inside ? HIT : FALSE_POSITIVE) : (inside ? MISSED : OUTSIDE);
        o[i] = r; o[i + 1] = g; o[i + 2] = b; o[i + 3] = 255; } });
      const pair = el("div", {class: "pair"}); pair.append(...canvases.splice(start));
      if ((c.words || {})[name]) pair.appendChild(shadedWords(c.words[name])); canvases.push(pair); }
    tiles.replaceChildren(...canvases);
    box.dataset.rendered = `${s.id}|${c.name}|${t}`;
  }
  sample.addEventListener("change", () => { fillClasses(); render(); });
  cls.addEventListener("change", render); slider.addEventListener("input", render);
  fillClasses(); render();
  const legend = el("div", {class: "legend", id: `legend-${gi}`}, "binarised map (map ≥ threshold):");
  [["hit", HIT], ["false positive", FALSE_POSITIVE], ["missed", MISSED], ["outside, not selected", OUTSIDE]].forEach(([n, c]) => {
    legend.append(el("span", {style: `background:rgb(${c.join(",")})`}), n); });
  box.append(el("h3", {}, "Samples "), "image ", sample, " class ", cls, " threshold ", slider, label, legend, tiles);
  box.id = `browser-${gi}`; return box;
}

DATA.groups.forEach((group, gi) => {
  const section = el("section"); section.appendChild(el("h2", {}, `${group.backbone} on ${group.dataset}`));
  const board = el("div", {class: "scroll"}); board.appendChild(leaderboard(group, gi)); section.appendChild(board);
  const notes = el("ul", {class: "notes", id: `notes-${gi}`}); (group.notes || []).forEach(n => notes.appendChild(el("li", {}, n)));
  section.appendChild(notes); section.appendChild(el("h3", {}, "Protocol"));
  const list = lines => { const ul = el("ul", {class: "protocol"}); lines.forEach(l => ul.appendChild(el("li", {}, l))); return ul; };
  section.appendChild(el("div", {}, "Common to every run:")); section.appendChild(list(group.common_protocol || []));
  group.runs.forEach(r => { const run = el("div", {class: "run-protocol"});
    run.appendChild(el("div", {}, `${r.explainer}${r.mark || ""}: ${r.differences.length ? "differs in" : "no difference"}`));
    if (r.differences.length) run.appendChild(list(r.differences));
    const full = el("details"); full.append(el("summary", {}, "full protocol card"), list(r.protocol)); run.appendChild(full);
    section.appendChild(run); });
  section.appendChild(perClass(group, gi)); section.appendChild(browser(group, gi));
  document.getElementById("groups").appendChild(section);
});
DATA.charts.forEach(c => document.getElementById("charts").appendChild(el("img", {src: c.src, alt: c.name, title: c.name})));
</script></body></html>
"""
