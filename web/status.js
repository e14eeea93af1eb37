// Minimal Flowmill page: queue a workflow file and watch it run over the websocket.
// The full canvas (litegraph) replaces this page; it speaks the same ComfyUI protocol.

const clientId = crypto.randomUUID();
const $ = (id) => document.getElementById(id);

function connect() {
  const scheme = location.protocol === "https:" ? "wss" : "ws";
  const socket = new WebSocket(`${scheme}://${location.host}/api/ws?clientId=${clientId}`);
  socket.onopen = () => { $("connection").textContent = "connected"; };
  socket.onclose = () => { $("connection").textContent = "disconnected; retrying"; setTimeout(connect, 2000); };
  socket.onmessage = (event) => {
    if (typeof event.data !== "string") return; // binary preview frames are not shown here
    const { type, data } = JSON.parse(event.data);
    if (type === "status") $("queue-remaining").textContent = data.status.exec_info.queue_remaining;
    if (type === "executing") $("progress").textContent = data.node === null ? "done" : `running node ${data.node}`;
    if (type === "progress") { $("progress-bar").max = data.max; $("progress-bar").value = data.value; }
    if (type === "execution_error") $("progress").textContent = `error in node ${data.node_id}: ${data.exception_message}`;
    if (type === "executed" && data.output && data.output.images) showImages(data.output.images);
  };
}

function showImages(images) {
  for (const image of images) {
    const element = document.createElement("img");
    const query = new URLSearchParams({ filename: image.filename, subfolder: image.subfolder, type: image.type });
    element.src = `/api/view?${query}`;
    $("images").prepend(element);
  }
}

// PNG tEXt chunks hold "prompt" and "workflow", as ComfyUI writes them.
function pngTextChunks(buffer) {
  const view = new DataView(buffer);
  const chunks = {};
  let offset = 8;
  while (offset + 8 <= buffer.byteLength) {
    const length = view.getUint32(offset);
    const type = String.fromCharCode(...new Uint8Array(buffer, offset + 4, 4));
    if (type === "tEXt") {
      const bytes = new Uint8Array(buffer, offset + 8, length);
      const split = bytes.indexOf(0);
      const decoder = new TextDecoder();
      chunks[decoder.decode(bytes.slice(0, split))] = decoder.decode(bytes.slice(split + 1));
    }
    offset += 12 + length;
  }
  return chunks;
}

async function readWorkflow(file) {
  if (file.name.toLowerCase().endsWith(".png")) {
    const chunks = pngTextChunks(await file.arrayBuffer());
    return JSON.parse(chunks.workflow || chunks.prompt);
  }
  return JSON.parse(await file.text());
}

async function submit(file) {
  await queueWorkflow(await readWorkflow(file));
}

async function queueWorkflow(workflow) {
  const isCanvasFile = Array.isArray(workflow.nodes);
  const body = { prompt: workflow, client_id: clientId,
                 extra_data: isCanvasFile ? { extra_pnginfo: { workflow } } : {} };
  const response = await fetch("/api/prompt", {
    method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body) });
  const result = await response.json();
  $("submit-result").textContent = response.ok
    ? `queued as ${result.prompt_id}`
    : `rejected: ${result.error.message}\n${JSON.stringify(result.node_errors, null, 2)}`;
}

// The workflow Flowmill opens with (`serve --workflow`): its first CLIPTextEncode node is the
// prompt this page lets you edit before queueing.
let defaultWorkflow = null;

async function loadDefaultWorkflow() {
  const response = await fetch("/api/flowmill/default_workflow");
  if (!response.ok) { $("default-prompt").placeholder = "no default workflow"; return; }
  defaultWorkflow = await response.json();
  const promptNode = defaultWorkflow.nodes.find((node) => node.type === "CLIPTextEncode");
  if (promptNode) $("default-prompt").value = promptNode.widgets_values[0];
  $("queue-default").disabled = false;
}

function queueDefault() {
  const workflow = structuredClone(defaultWorkflow);
  const promptNode = workflow.nodes.find((node) => node.type === "CLIPTextEncode");
  if (promptNode) promptNode.widgets_values[0] = $("default-prompt").value;
  return queueWorkflow(workflow);
}

$("workflow-file").addEventListener("change", (event) => {
  const file = event.target.files[0];
  if (file) submit(file).catch((error) => { $("submit-result").textContent = String(error); });
});
$("queue-default").addEventListener("click", () => {
  queueDefault().catch((error) => { $("submit-result").textContent = String(error); });
});
loadDefaultWorkflow().catch((error) => { $("submit-result").textContent = String(error); });
connect();
