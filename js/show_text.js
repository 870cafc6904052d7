// Shows the text any InfiniteTalk node returns in {"ui": {"text": [...]}} in a read-only box on the node
// (e.g. the window plan of InfiniteTalk Frame Count).
// Public frontend API only: scripts/app.js and LGraphNode.addDOMWidget (frontend 1.27 to 1.53); the internal
// scripts/widgets.js (ComfyWidgets) is not used.
import { app } from "../../scripts/app.js";

const WIDGET = "shown_text";

function textWidget(node) {
  const existing = node.widgets?.find((w) => w.name === WIDGET);
  if (existing) return existing;
  const box = document.createElement("textarea");
  box.readOnly = true;
  box.spellcheck = false;
  box.className = "comfy-multiline-input infinitetalk-shown-text";
  Object.assign(box.style, { opacity: "0.75", whiteSpace: "pre-wrap", fontFamily: "monospace", fontSize: "11px" });
  const widget = node.addDOMWidget(WIDGET, "infinitetalk_text", box, {
    getValue: () => box.value,
    setValue: (value) => {
      box.value = value;
    },
    getMinHeight: () => 180, // room for a ~10-line plan
    serialize: false, // not sent to the server
  });
  widget.serialize = false; // not saved in the workflow's widgets_values
  return widget;
}

app.registerExtension({
  name: "infinitetalk_lipsync.ShowText",
  async beforeRegisterNodeDef(nodeType, nodeData) {
    if (!nodeData.category?.startsWith("InfiniteTalk/")) return;
    const onExecuted = nodeType.prototype.onExecuted;
    nodeType.prototype.onExecuted = function (message) {
      onExecuted?.apply(this, arguments);
      if (!message?.text) return;
      textWidget(this).value = message.text.join("\n");
      const [minWidth, minHeight] = this.computeSize();
      this.setSize([Math.max(this.size[0], minWidth, 520), Math.max(this.size[1], minHeight)]);
      this.setDirtyCanvas?.(true, true);
    };
  },
});
