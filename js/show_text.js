// Shows the text any InfiniteTalk node returns in {"ui": {"text": [...]}} in a read-only box on the node
// (e.g. the window plan of InfiniteTalk Frame Count).
import { app } from "../../scripts/app.js";
import { ComfyWidgets } from "../../scripts/widgets.js";

app.registerExtension({
  name: "infinitetalk_lipsync.ShowText",
  async beforeRegisterNodeDef(nodeType, nodeData) {
    if (!nodeData.category?.startsWith("InfiniteTalk/")) return;
    const onExecuted = nodeType.prototype.onExecuted;
    nodeType.prototype.onExecuted = function (message) {
      onExecuted?.apply(this, arguments);
      if (!message?.text) return;
      let widget = this.widgets?.find((w) => w.name === "shown_text");
      if (!widget) {
        widget = ComfyWidgets.STRING(this, "shown_text", ["STRING", { multiline: true }], app).widget;
        widget.inputEl.readOnly = true;
        widget.inputEl.style.opacity = 0.75;
        // display only: neither saved in the workflow (serialize) nor sent to the server (options.serialize)
        widget.serialize = false;
        widget.options.serialize = false;
        widget.options.getMinHeight = () => 150; // room for a ~10-line plan
      }
      widget.value = message.text.join("\n");
      const [minWidth, minHeight] = this.computeSize();
      this.setSize([Math.max(this.size[0], minWidth, 420), Math.max(this.size[1], minHeight)]);
      app.graph.setDirtyCanvas(true, true);
    };
  },
});
