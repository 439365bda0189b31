"""The UI-format twins of the API-format example workflows.

`api/<name>.json` is a graph in ComfyUI's API ("prompt") format: what `POST /prompt` takes. `<name>.json` next to
this script is the same graph in the UI's litegraph "workflow" format (version 0.4): what a user drags into the
browser and what ComfyUI's template browser lists for this pack (it serves `example_workflows/*.json`). The UI
format needs what the API format leaves out, taken from the node definitions (`/object_info`):

- each node's input *sockets* (the non-widget inputs, in definition order, then one input per widget carrying
  `widget: {name}`), output sockets with the ids of the links leaving them, and a `links` table
  `[id, from node, from slot, to node, to slot, type]`;
- `widgets_values` in the node's widget order, with the extra "control after generate" value after an INT that
  has one (`control_after_generate`, or the legacy names `seed` / `noise_seed`) or a COMBO that asks for one;
  the examples say `fixed`, so a queued example keeps its seed;
- a position and size per node: columns by the longest path from a loader, rows in the order of their inputs;
  and the view (`extra.ds`) that shows the whole graph in a 1280x800 window.

`ui_to_api` is the inverse (what the frontend's "graph to prompt" does for plain nodes); the tests check that every
shipped UI file converts back to its API graph, and in Chromium that ComfyUI's own frontend does the same.

Regenerate (ComfyUI with this pack loaded; either a running server or in-process):

    python make_ui.py --object-info http://127.0.0.1:8188/object_info
    python make_ui.py --comfyui /path/to/ComfyUI          # imports ComfyUI here (CPU), loads this pack
    python make_ui.py --comfyui ... --check               # exit 1 when a shipped UI file is stale
"""

from __future__ import annotations

import argparse
import json
import sys
import uuid
from pathlib import Path

HERE = Path(__file__).resolve().parent
API = HERE / "api"
WIDGET_TYPES = ("INT", "FLOAT", "STRING", "BOOLEAN", "COMBO")
CONTROL_VALUE = "fixed"
# the part of the canvas a 1280x800 window shows free of ComfyUI's menus, in canvas pixels (the canvas begins below
# the 40 px top bar and right of the 40 px side bar): left, top, right, bottom
VIEW = (20, 55, 1220, 690)
NAMESPACE = uuid.UUID("6f1c1d2e-3b7a-4c55-9a8e-0e5b1a7c2d41")  # stable workflow ids: uuid5(NAMESPACE, name)

__all__ = ["object_info", "widgets", "sockets", "api_to_ui", "ui_to_api", "load_api", "render", "main"]


# --- node definitions ----------------------------------------------------------------------------------------------

def object_info(nodes_module, names=None) -> dict:
    """`/object_info` entries built in-process from ComfyUI's loaded `nodes` module, as its server builds them
    (V3 nodes describe themselves; classic nodes through INPUT_TYPES / RETURN_TYPES / RETURN_NAMES)."""
    from comfy_api.internal import _ComfyNodeInternal

    out = {}
    for name in names if names is not None else list(nodes_module.NODE_CLASS_MAPPINGS):
        cls = nodes_module.NODE_CLASS_MAPPINGS[name]
        if issubclass(cls, _ComfyNodeInternal):
            out[name] = cls.GET_NODE_INFO_V1()
            continue
        inputs = cls.INPUT_TYPES()
        out[name] = {
            "input": inputs,
            "input_order": {k: list(v) for k, v in inputs.items()},
            "output": list(cls.RETURN_TYPES),
            "output_name": list(getattr(cls, "RETURN_NAMES", None) or cls.RETURN_TYPES),
            "name": name,
            "display_name": nodes_module.NODE_DISPLAY_NAME_MAPPINGS.get(name, name),
        }
    return out


def _inputs(entry: dict):
    """(name, type, options) of a node's required and optional inputs, in definition order."""
    order = entry.get("input_order") or {k: list(v) for k, v in entry["input"].items()}
    for section in ("required", "optional"):
        for name in order.get(section, []):
            spec = entry["input"][section][name]
            kind = spec[0]
            opts = spec[1] if len(spec) > 1 and isinstance(spec[1], dict) else {}
            yield name, ("COMBO" if isinstance(kind, list) else kind), opts


def _is_widget(kind: str, opts: dict) -> bool:
    return kind in WIDGET_TYPES and not opts.get("forceInput", False)


def _has_control(name: str, kind: str, opts: dict) -> bool:
    if kind == "INT":
        flag = opts.get("control_after_generate")
        return bool(flag) if flag is not None else name in ("seed", "noise_seed")
    return kind == "COMBO" and bool(opts.get("control_after_generate"))


def widgets(entry: dict) -> list[tuple[str, bool]]:
    """The node's widgets in order: (input name, True for a "control after generate" value) per widget value."""
    out = []
    for name, kind, opts in _inputs(entry):
        if _is_widget(kind, opts):
            out.append((name, False))
            if _has_control(name, kind, opts):
                out.append((name, True))
    return out


def sockets(entry: dict) -> list[tuple[str, str, bool]]:
    """The node's input slots as the frontend numbers them: (name, type, is a widget's input); the plain sockets
    first, then one per widget."""
    plain = [(n, k, False) for n, k, o in _inputs(entry) if not _is_widget(k, o)]
    return plain + [(n, k, True) for n, k, o in _inputs(entry) if _is_widget(k, o)]


def _outputs(entry: dict) -> list[tuple[str, str]]:
    types = list(entry.get("output", []))
    names = list(entry.get("output_name") or types)
    return list(zip(names, types))


# --- API -> UI -----------------------------------------------------------------------------------------------------

def _is_link(value) -> bool:
    return isinstance(value, list) and len(value) == 2 and isinstance(value[0], str) and isinstance(value[1], int)


def _size(entry: dict) -> list[int]:
    """A node's size as the frontend draws it: 20 px a socket row, 24 a widget, a multiline text box 54 more."""
    outs = len(_outputs(entry))
    plain = sum(1 for s in sockets(entry) if not s[2])
    multiline = sum(1 for n, k, o in _inputs(entry) if _is_widget(k, o) and k == "STRING" and o.get("multiline"))
    rows = max(plain, outs, 1)
    h = rows * 20 + 24 * (len(widgets(entry)) - multiline) + 54 * multiline + 14
    if multiline:
        return [400, max(h, 200)]
    return [315, h]


def _depths(api: dict) -> dict[str, int]:
    """Each node's longest path from a node without inputs (a loader)."""
    parents = {nid: [v[0] for v in node["inputs"].values() if _is_link(v)] for nid, node in api.items()}
    depth: dict[str, int] = {}

    def d(nid: str, seen=()) -> int:
        if nid not in depth:
            if nid in seen:
                raise ValueError(f"the graph has a cycle through node {nid}")
            depth[nid] = 1 + max((d(p, seen + (nid,)) for p in parents[nid]), default=-1)
        return depth[nid]

    for nid in api:
        d(nid)
    return depth


def _layout(api: dict, info: dict) -> dict[str, tuple[list[int], list[int]]]:
    """Positions and sizes: a column per depth (an output node such as Save Image goes below its input's node, to
    keep the graph compact on screen); within a column, rows follow the rows of their inputs."""
    parents = {nid: [v[0] for v in node["inputs"].values() if _is_link(v)] for nid, node in api.items()}
    depth = dict(_depths(api))
    for nid, node in api.items():
        if parents[nid] and not _outputs(info[node["class_type"]]):
            depth[nid] = max(depth[p] for p in parents[nid])
    columns: dict[int, list[str]] = {}
    for nid in api:
        columns.setdefault(depth[nid], []).append(nid)
    rank: dict[str, float] = {}
    out = {}
    x = 20
    for col in sorted(columns):
        members = columns[col]
        here = [n for n in members if any(depth[p] == col for p in parents[n])]  # output nodes below their input
        for i, nid in enumerate(n for n in members if n not in here):
            ps = [rank[p] for p in parents[nid]]
            rank[nid] = sum(ps) / len(ps) if ps else float(i)
        for nid in here:
            rank[nid] = max(rank[p] for p in parents[nid]) + 0.5
        members.sort(key=lambda n: (rank[n], int(n)))
        for i, nid in enumerate(members):
            rank[nid] = float(i)
        y = 20
        width = 0
        for nid in members:
            size = _size(info[api[nid]["class_type"]])
            out[nid] = ([x, y], size)
            y += size[1] + 70  # the title bar (30 px) sits above pos
            width = max(width, size[0])
        x += width + 50
    return out


def api_to_ui(api: dict, info: dict, name: str = "workflow") -> dict:
    """The UI-format ("workflow", version 0.4) graph of an API-format graph; `info` holds the `/object_info`
    entries of its node types."""
    missing = sorted({n["class_type"] for n in api.values()} - set(info))
    if missing:
        raise KeyError(f"no node definition for {missing}")
    ids = {nid: int(nid) for nid in api}
    depth = _depths(api)
    order = sorted(api, key=lambda n: (depth[n], int(n)))
    layout = _layout(api, info)
    links = []
    out_links: dict[tuple[str, int], list[int]] = {}
    nodes = []
    for nid in sorted(api, key=int):
        node = api[nid]
        entry = info[node["class_type"]]
        values = node["inputs"]
        unknown = sorted(set(values) - {s[0] for s in sockets(entry)})
        if unknown:
            raise KeyError(f"node {nid} ({node['class_type']}) has no input {unknown}")
        inputs = []
        for slot, (iname, kind, is_widget) in enumerate(sockets(entry)):
            item = {"name": iname, "type": kind, "link": None}
            if is_widget:
                item = {"name": iname, "type": kind, "widget": {"name": iname}, "link": None}
            value = values.get(iname)
            if _is_link(value):
                src, src_slot = value
                link_id = len(links) + 1
                link_type = _outputs(info[api[src]["class_type"]])[src_slot][1]
                links.append([link_id, ids[src], src_slot, ids[nid], slot, link_type])
                out_links.setdefault((src, src_slot), []).append(link_id)
                item["link"] = link_id
            inputs.append(item)
        wvalues = []
        for wname, control in widgets(entry):
            if control:
                wvalues.append(CONTROL_VALUE)
            elif _is_link(values.get(wname)):
                wvalues.append(_default(entry, wname))
            else:
                if wname not in values:
                    raise KeyError(f"node {nid} ({node['class_type']}) lacks a value for {wname}")
                wvalues.append(values[wname])
        pos, size = layout[nid]
        nodes.append({"id": ids[nid], "type": node["class_type"], "pos": pos, "size": size, "flags": {},
                      "order": order.index(nid), "mode": 0, "inputs": inputs, "outputs": [],
                      "properties": {"Node name for S&R": node["class_type"]}, "widgets_values": wvalues})
    for item in nodes:
        nid = str(item["id"])
        entry = info[api[nid]["class_type"]]
        item["outputs"] = [{"name": oname, "type": otype, "links": out_links.get((nid, slot), []),
                            "slot_index": slot} for slot, (oname, otype) in enumerate(_outputs(entry))]
    return {"id": str(uuid.uuid5(NAMESPACE, name)), "revision": 0, "last_node_id": max(ids.values()),
            "last_link_id": len(links), "nodes": nodes, "links": links, "groups": [], "config": {},
            "extra": {"ds": _view(layout.values())}, "version": 0.4}


def _view(boxes) -> dict:
    """Scale and offset that centre the nodes (title bars included) in `VIEW`; screen = (pos + offset) * scale."""
    boxes = list(boxes)
    x0 = min(p[0] for p, _ in boxes)
    y0 = min(p[1] - 30 for p, _ in boxes)
    x1 = max(p[0] + s[0] for p, s in boxes)
    y1 = max(p[1] + s[1] for p, s in boxes)
    left, top, right, bottom = VIEW
    scale = round(min((right - left) / (x1 - x0), (bottom - top) / (y1 - y0), 1.0), 3)
    ox = left / scale - x0 + ((right - left) / scale - (x1 - x0)) / 2
    oy = top / scale - y0 + ((bottom - top) / scale - (y1 - y0)) / 2
    return {"scale": scale, "offset": [round(ox, 1), round(oy, 1)]}


def _default(entry: dict, wname: str):
    for name, kind, opts in _inputs(entry):
        if name == wname:
            return opts.get("default", 0 if kind in ("INT", "FLOAT") else "")
    raise KeyError(wname)


# --- UI -> API -----------------------------------------------------------------------------------------------------

def ui_to_api(ui: dict, info: dict) -> dict:
    """The API-format graph of a UI-format one: links become [node id, slot], widget values are matched to their
    inputs by the node definition's widget order (control values dropped; a linked widget takes its link)."""
    links = {ln[0]: ln for ln in ui["links"]}
    api = {}
    for node in ui["nodes"]:
        if node.get("mode", 0) != 0:
            raise ValueError(f"node {node['id']} is muted or bypassed (mode {node['mode']})")
        entry = info[node["type"]]
        inputs = {}
        want = widgets(entry)
        got = node.get("widgets_values", [])
        if len(want) != len(got):
            raise ValueError(f"node {node['id']} ({node['type']}): {len(got)} widget values for {len(want)} widgets")
        for (wname, control), value in zip(want, got):
            if not control:
                inputs[wname] = value
        for item in node.get("inputs", []):
            if item.get("link") is None:
                continue
            ln = links[item["link"]]
            if ln[3] != node["id"]:
                raise ValueError(f"link {ln[0]} does not end at node {node['id']}")
            inputs[item["name"]] = [str(ln[1]), ln[2]]
        api[str(node["id"])] = {"class_type": node["type"], "inputs": inputs}
    return api


# --- files ---------------------------------------------------------------------------------------------------------

def load_api(folder: Path = API) -> dict[str, dict]:
    return {p.stem: json.loads(p.read_text()) for p in sorted(folder.glob("*.json"))}


def render(ui: dict) -> str:
    return json.dumps(ui, indent=1, ensure_ascii=False) + "\n"


def _object_info_from(source: str) -> dict:
    if source.startswith(("http://", "https://")):
        import urllib.request

        with urllib.request.urlopen(source, timeout=60) as r:
            return json.loads(r.read())
    return json.loads(Path(source).read_text())


def _object_info_in_process(root: Path) -> dict:
    """ComfyUI imported from `root` (CPU), its built-in extra nodes and this pack loaded."""
    import asyncio

    sys.path.insert(0, str(root))
    from comfy.cli_args import args

    args.cpu = True
    args.disable_api_nodes = True
    import nodes

    asyncio.run(nodes.init_extra_nodes(init_custom_nodes=False, init_api_nodes=False))
    if not asyncio.run(nodes.load_custom_node(str(HERE.parent))):
        raise RuntimeError(f"ComfyUI could not import the pack at {HERE.parent} (see its log)")
    return object_info(nodes)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    src = ap.add_mutually_exclusive_group(required=True)
    src.add_argument("--object-info", help="a running ComfyUI's /object_info URL, or that JSON saved to a file")
    src.add_argument("--comfyui", type=Path, help="ComfyUI's root folder: import it here and load this pack")
    ap.add_argument("--check", action="store_true", help="write nothing; exit 1 when a UI file is stale")
    a = ap.parse_args(argv)
    info = _object_info_from(a.object_info) if a.object_info else _object_info_in_process(a.comfyui)
    stale = []
    for name, api in load_api().items():
        text = render(api_to_ui(api, info, name))
        path = HERE / f"{name}.json"
        if not path.is_file() or path.read_text() != text:
            stale.append(path.name)
            if not a.check:
                path.write_text(text)
    verb = "stale" if a.check else "written"
    print(f"{verb}: {', '.join(stale)}" if stale else "up to date")
    return 1 if a.check and stale else 0


if __name__ == "__main__":
    sys.exit(main())
