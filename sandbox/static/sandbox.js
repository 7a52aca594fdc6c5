/* The sandbox page: Slack's client for one local workspace.
 *
 * It draws what the app sent through Slack's Web API (messages and their threads, ephemeral messages,
 * the App Home, modals, files) from Block Kit, and sends what the person does to the sandbox server
 * (/sandbox/...), which turns it into the signed request Slack would send the app. Changes arrive as
 * server-sent events (/sandbox/events); each one is followed by a read of what changed since the last.
 */
"use strict";

const PAGE_SIZE = 50;
const MAX_RENDERED = 300;  // messages kept in the page; older ones are loaded again on demand

const EMOJI = {
  white_check_mark: "✅", heavy_check_mark: "✔️", warning: "⚠️", hourglass_flowing_sand: "⏳", hourglass: "⌛",
  no_entry_sign: "🚫", no_entry: "⛔", leftwards_arrow_with_hook: "↩️", envelope: "✉️", email: "📧",
  incoming_envelope: "📨", x: "❌", white_small_square: "▫️", black_small_square: "▪️", white_circle: "⚪",
  large_blue_circle: "🔵", red_circle: "🔴", pencil2: "✏️", memo: "📝", new: "🆕", link: "🔗", bell: "🔔",
  tada: "🎉", eyes: "👀", thumbsup: "👍", "+1": "👍", "-1": "👎", rocket: "🚀", lock: "🔒", key: "🔑",
  chart_with_upwards_trend: "📈", bar_chart: "📊", calendar: "📅", date: "📅", moneybag: "💰", dollar: "💵",
  information_source: "ℹ️", bulb: "💡", page_facing_up: "📄", clipboard: "📋", inbox_tray: "📥",
  outbox_tray: "📤", wave: "👋", clock1: "🕐", stopwatch: "⏱️", heavy_plus_sign: "➕", heavy_minus_sign: "➖",
  arrow_right: "➡️", arrows_counterclockwise: "🔄", construction: "🚧", sparkles: "✨", fire: "🔥",
  question: "❓", exclamation: "❗", robot_face: "🤖", bust_in_silhouette: "👤", busts_in_silhouette: "👥",
  receipt: "🧾", money_with_wings: "💸", ok: "🆗", repeat: "🔁", mag: "🔍", gear: "⚙️", hammer_and_wrench: "🛠️",
};
const AVATAR_COLOURS = ["#e8912d", "#2bac76", "#4a154b", "#1264a3", "#e01e5a", "#36c5f0", "#7c3085", "#9e5a00"];

const state = {
  workspace: null,
  people: new Map(),
  me: null,
  view: { kind: "channel", channel: null },  // or { kind: "app", tab: "home" | "messages" }
  version: 0,
  rendered: new Map(),  // ts → element, for the conversation shown
  oldestTs: null,
  hasMore: false,
  thread: null,  // { channel, ts }
  threadRendered: new Map(),
  dm: null,
  home: null,
  modal: null,
  unread: new Map(),  // channel id → count
  counted: new Set(),  // the ts of the messages counted as unread
  loadedAt: 0,  // messages after this time (seconds) that arrive elsewhere are unread
  syncing: false,
  again: false,
  events: null,
};

const $ = (id) => document.getElementById(id);

function h(tag, attributes, ...children) {
  const element = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (name === "class") element.className = value;
    else if (name === "html") element.innerHTML = value;
    else if (name.startsWith("on")) element.addEventListener(name.slice(2), value);
    else if (name === "dataset") Object.assign(element.dataset, value);
    else element.setAttribute(name, value === true ? "" : value);
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    element.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return element;
}

async function api(path, body) {
  const options = body === undefined ? {} : {
    method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body),
  };
  const response = await fetch(path, options);
  const data = await response.json().catch(() => ({ ok: false, error: `HTTP ${response.status}` }));
  if (!response.ok || data.ok === false) throw new Error(data.error || `HTTP ${response.status}`);
  return data;
}

function query(params) {
  return new URLSearchParams(Object.entries(params).filter(([, v]) => v !== null && v !== undefined)).toString();
}

function toast(text, error = false) {
  const note = h("div", { class: error ? "toast error" : "toast", role: "status" }, text);
  $("toasts").append(note);
  setTimeout(() => note.remove(), 6000);
}

/* --- mrkdwn ------------------------------------------------------------------------------------ */

function escapeHtml(text) {
  return text.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;").replace(/"/g, "&quot;");
}

function unescapeSlack(text) {
  return text.replace(/&lt;/g, "<").replace(/&gt;/g, ">").replace(/&amp;/g, "&");
}

function emojify(html) {
  return html.replace(/:([a-z0-9_+\-]+):/g, (whole, name) => EMOJI[name] || whole);
}

function personName(id) {
  if (state.workspace && id === state.workspace.app.bot_user_id) return state.workspace.app.name;
  if (id === "USLACKBOT") return "Slackbot";
  const person = state.people.get(id);
  return person ? person.name : id;
}

function channelName(id) {
  const channel = (state.workspace?.channels || []).find((c) => c.id === id);
  return channel ? channel.name : id;
}

function formatDate(seconds, format, fallback) {
  const date = new Date(Number(seconds) * 1000);
  if (Number.isNaN(date.getTime())) return fallback;
  const parts = {
    date_num: date.toISOString().slice(0, 10),
    date: date.toLocaleDateString(undefined, { month: "long", day: "numeric", year: "numeric" }),
    date_short: date.toLocaleDateString(undefined, { month: "short", day: "numeric", year: "numeric" }),
    date_long: date.toLocaleDateString(undefined, { weekday: "long", month: "long", day: "numeric", year: "numeric" }),
    date_pretty: date.toLocaleDateString(undefined, { month: "long", day: "numeric", year: "numeric" }),
    date_short_pretty: date.toLocaleDateString(undefined, { month: "short", day: "numeric", year: "numeric" }),
    date_long_pretty: date.toLocaleDateString(undefined, { weekday: "long", month: "long", day: "numeric", year: "numeric" }),
    time: date.toLocaleTimeString(undefined, { hour: "2-digit", minute: "2-digit" }),
    time_secs: date.toLocaleTimeString(),
  };
  return format.replace(/\{(\w+)\}/g, (whole, token) => parts[token] ?? whole);
}

/* One `<...>` of mrkdwn: a mention, a channel, a date, a special mention or a link. */
function special(inner) {
  const [target, label] = splitOnce(inner, "|");
  if (target.startsWith("@")) {
    const id = target.slice(1);
    const me = id === state.me ? " me" : "";
    return `<span class="mention${me}" data-user="${escapeHtml(id)}">@${escapeHtml(unescapeSlack(label || personName(id)))}</span>`;
  }
  if (target.startsWith("#")) {
    const id = target.slice(1);
    return `<span class="channel-link" data-channel="${escapeHtml(id)}">#${escapeHtml(unescapeSlack(label || channelName(id)))}</span>`;
  }
  if (target.startsWith("!date^")) {
    const [, seconds, format, link] = target.split("^");
    const text = escapeHtml(formatDate(seconds, format || "{date}", unescapeSlack(label || "")));
    return link ? `<a href="${escapeHtml(unescapeSlack(link))}" target="_blank" rel="noopener">${text}</a>` : text;
  }
  if (target.startsWith("!subteam^")) return `<span class="mention">${escapeHtml(unescapeSlack(label || "@group"))}</span>`;
  if (target.startsWith("!")) return `<span class="mention">@${escapeHtml(target.slice(1))}</span>`;
  const url = unescapeSlack(target);
  if (!/^(https?:|mailto:|tel:)/i.test(url)) return escapeHtml(`<${unescapeSlack(inner)}>`);
  const text = escapeHtml(unescapeSlack(label || url));
  return `<a href="${escapeHtml(url)}" target="_blank" rel="noopener noreferrer">${text}</a>`;
}

function splitOnce(text, separator) {
  const at = text.indexOf(separator);
  return at < 0 ? [text, ""] : [text.slice(0, at), text.slice(at + 1)];
}

/* Bold, italics, strike-through, inline code, emoji and `<...>` in one line of mrkdwn. */
function inline(text) {
  const kept = [];
  const keep = (html) => `\u0000${kept.push(html) - 1}\u0000`;
  let work = text.replace(/`([^`\n]+)`/g, (_, code) => keep(`<code>${escapeHtml(unescapeSlack(code))}</code>`));
  work = work.replace(/<([^<>\n]+)>/g, (_, inner) => keep(special(inner)));
  work = escapeHtml(unescapeSlack(work));
  const edge = "(^|[\\s(\\[{\"'.,;:!?\\-\\u0000])";
  const after = "(?=$|[\\s)\\]}\"'.,;:!?\\-\\u0000])";
  work = work.replace(new RegExp(`${edge}\\*(?!\\s)([^*\\n]+?)\\*${after}`, "g"), "$1<b>$2</b>");
  work = work.replace(new RegExp(`${edge}_(?!\\s)([^_\\n]+?)_${after}`, "g"), "$1<i>$2</i>");
  work = work.replace(new RegExp(`${edge}~(?!\\s)([^~\\n]+?)~${after}`, "g"), "$1<s>$2</s>");
  work = emojify(work);
  return work.replace(/\u0000(\d+)\u0000/g, (_, index) => kept[Number(index)]);
}

/* mrkdwn as HTML: code blocks, block quotes, then each line. */
function mrkdwn(text) {
  const pieces = String(text || "").split("```");
  return pieces.map((piece, index) => {
    if (index % 2 === 1) return `<pre>${escapeHtml(unescapeSlack(piece.replace(/^\n/, "")))}</pre>`;
    const lines = piece.split("\n");
    const out = [];
    let quote = [];
    const flush = () => { if (quote.length) out.push(`<blockquote>${quote.join("<br>")}</blockquote>`); quote = []; };
    lines.forEach((line) => {
      if (line.startsWith("&gt;")) quote.push(inline(line.replace(/^&gt; ?/, "")));
      else { flush(); out.push(inline(line)); }
    });
    flush();
    return out.join("<br>").replace(/<br>(<blockquote>)/g, "$1").replace(/(<\/blockquote>)<br>/g, "$1");
  }).join("");
}

function plain(text, emoji = true) {
  const html = escapeHtml(String(text || ""));
  return emoji ? emojify(html) : html;
}

/* A text object (plain_text or mrkdwn) as HTML. */
function textObject(object) {
  if (!object) return "";
  if (typeof object === "string") return mrkdwn(object);
  if (object.type === "mrkdwn") return mrkdwn(object.text);
  return plain(object.text, object.emoji !== false);
}

/* --- Block Kit ------------------------------------------------------------------------------------ */

function unsupported(kind, type, node) {
  return h("div", { class: "unsupported", dataset: { unsupported: type || "?" }, title: JSON.stringify(node).slice(0, 600) },
    `Unsupported ${kind}: `, h("code", {}, type || "(no type)"));
}

function renderElement(element, where) {
  if (element && element.type === "button") return renderButton(element, where);
  if (element && element.type === "image") return h("img", { src: element.image_url, alt: element.alt_text || "" });
  return unsupported("element", element && element.type, element);
}

function renderButton(element, where) {
  const classes = ["sk-btn"];
  if (element.style === "primary") classes.push("primary");
  if (element.style === "danger") classes.push("danger");
  const button = h("button", { class: classes.join(" "), type: "button", html: textObject(element.text) });
  button.addEventListener("click", () => clickButton(button, element, where));
  return button;
}

function renderInput(block, index, where) {
  const element = block.element || {};
  const id = `input-${where.scope}-${index}`;
  const wrapper = h("div", { class: "b-input", dataset: { blockId: block.block_id || `block-${index}` } });
  wrapper.append(h("label", { for: id, html: textObject(block.label) },
    block.optional ? h("span", { class: "optional" }, " (optional)") : null));
  if (element.type !== "plain_text_input") {
    wrapper.append(unsupported("element", element.type, element));
    return wrapper;
  }
  const field = h(element.multiline ? "textarea" : "input", {
    id, name: element.action_id || "", placeholder: element.placeholder ? element.placeholder.text : null,
    maxlength: element.max_length || null, dataset: { actionId: element.action_id || "", minLength: element.min_length || "" },
  });
  if (element.initial_value) field.value = element.initial_value;
  field.dataset.required = block.optional ? "" : "required";
  field.addEventListener("input", () => showInputError(wrapper, ""));  // a new try: the old error goes
  wrapper.append(field);
  if (block.hint) wrapper.append(h("div", { class: "hint", html: textObject(block.hint) }));
  wrapper.append(h("div", { class: "error", hidden: true }));
  return wrapper;
}

function renderBlock(block, index, where) {
  const at = { ...where, block: index };
  switch (block.type) {
    case "header":
      return h("div", { class: "b-header", html: textObject(block.text) });
    case "divider":
      return h("hr", { class: "b-divider" });
    case "section": {
      const body = h("div", { class: "b-section-body" });
      if (block.text) body.append(h("div", { class: "msg-text", html: textObject(block.text) }));
      if (block.fields) body.append(h("div", { class: "b-fields" }, block.fields.map((field) => h("div", { html: textObject(field) }))));
      const section = h("div", { class: "b-section" }, body);
      if (block.accessory) section.append(h("div", { class: "b-accessory" }, renderElement(block.accessory, { ...at, element: "accessory" })));
      return section;
    }
    case "context":
      return h("div", { class: "b-context" }, (block.elements || []).map((element) => {
        if (element.type === "image") return h("img", { src: element.image_url, alt: element.alt_text || "" });
        if (element.type === "mrkdwn" || element.type === "plain_text") return h("span", { html: textObject(element) });
        return unsupported("element", element.type, element);
      }));
    case "actions":
      return h("div", { class: "b-actions" }, (block.elements || []).map((element, position) => renderElement(element, { ...at, element: position })));
    case "image":
      return h("div", { class: "b-image" },
        block.title ? h("div", { class: "title", html: textObject(block.title) }) : null,
        h("img", { src: block.image_url, alt: block.alt_text || "" }));
    case "input":
      return renderInput(block, index, where);
    default:
      return unsupported("block", block.type, block);
  }
}

function renderBlocks(blocks, where) {
  return h("div", { class: "blocks" }, (blocks || []).map((block, index) => renderBlock(block, index, where)));
}

/* --- messages ----------------------------------------------------------------------------------- */

function timeOf(ts) {
  return new Date(Number(ts) * 1000).toLocaleTimeString(undefined, { hour: "2-digit", minute: "2-digit" });
}

function avatar(userId) {
  if (state.workspace && userId === state.workspace.app.bot_user_id) {
    return h("div", { class: "avatar", style: "background:#1d4f91" }, "BP");
  }
  if (userId === "USLACKBOT") return h("div", { class: "avatar", style: "background:#36c5f0" }, "S");
  const name = personName(userId);
  const colour = AVATAR_COLOURS[[...userId].reduce((sum, c) => sum + c.charCodeAt(0), 0) % AVATAR_COLOURS.length];
  return h("div", { class: "avatar", style: `background:${colour}` }, name.slice(0, 1).toUpperCase());
}

function fileSize(bytes) {
  return bytes > 1024 * 1024 ? `${(bytes / 1024 / 1024).toFixed(1)} MB` : `${Math.max(1, Math.round(bytes / 1024))} KB`;
}

function renderFiles(files) {
  return h("div", { class: "files" }, files.map((file) => {
    const url = `/files/${encodeURIComponent(file.id)}/${encodeURIComponent(file.name)}`;
    if ((file.mimetype || "").startsWith("image/")) {
      return h("div", { class: "file-image", dataset: { file: file.name } },
        h("div", { class: "file-title" }, file.title || file.name),
        h("a", { href: url, target: "_blank" }, h("img", { src: url, alt: file.title || file.name })));
    }
    return h("div", { class: "file-card", dataset: { file: file.name } },
      h("div", { class: "file-icon" }, (file.filetype || "file").toUpperCase().slice(0, 4)),
      h("div", { class: "file-meta" },
        h("div", { class: "file-name" }, file.title || file.name),
        h("div", { class: "file-size" }, `${file.name} · ${fileSize(file.size || 0)}`)),
      h("a", { class: "sk-btn", href: url, download: file.name, style: "line-height:28px" }, "Download"));
  }));
}

function renderMessage(message, inThread = false) {
  if (message.kind === "refusal") return renderRefusal(message);
  const where = { scope: "message", channel: message.channel, ts: message.ts, ephemeral: message.kind === "ephemeral" };
  const isBot = state.workspace && message.user === state.workspace.app.bot_user_id;
  const head = h("div", { class: "msg-head" },
    h("span", { class: "name" }, personName(message.user)),
    isBot ? h("span", { class: "app-badge" }, "APP") : null,
    h("span", { class: "time", title: message.ts }, timeOf(message.ts)));
  const body = h("div", { class: "msg-body" });
  if (message.kind === "ephemeral") {
    body.append(h("div", { class: "only-you" }, "👁 Only visible to you",
      h("button", { type: "button", onclick: (event) => event.target.closest(".msg").remove() }, "Dismiss")));
  }
  body.append(head);
  if (message.blocks && message.blocks.length) body.append(renderBlocks(message.blocks, where));
  else if (message.text) body.append(h("div", { class: "msg-text", html: mrkdwn(message.text) }));
  if (message.files && message.files.length) body.append(renderFiles(message.files));
  if (!inThread && message.reply_count) {
    const count = message.reply_count === 1 ? "1 reply" : `${message.reply_count} replies`;
    body.append(h("div", { class: "thread-link" },
      h("button", { type: "button", onclick: () => openThread(message.channel, message.ts) }, count),
      h("span", { class: "last" }, `Last reply ${timeOf(message.latest_reply)}`)));
  }
  return h("div", {
    class: `msg ${message.kind}`, dataset: { ts: message.ts, kind: message.kind, channel: message.channel },
  }, avatar(message.user), body);
}

function renderRefusal(refusal) {
  return h("div", { class: "msg refusal", dataset: { ts: refusal.ts, kind: "refusal" } },
    h("div", { class: "avatar", style: "background:#e01e5a" }, "!"),
    h("div", { class: "msg-body" },
      h("div", { class: "refusal-title" }, `Invalid Block Kit: Slack refused ${refusal.method}`),
      h("ul", {}, refusal.problems.map((problem) => h("li", {}, problem)))));
}

/* --- the conversation shown ---------------------------------------------------------------------- */

function currentChannel() {
  if (state.view.kind === "channel") return state.view.channel;
  if (state.view.kind === "app" && state.view.tab === "messages") return state.dm;
  return null;
}

function nearBottom(scroller) {
  return scroller.scrollHeight - scroller.scrollTop - scroller.clientHeight < 120;
}

/* A conversation stays scrolled to its newest message while the person has not scrolled up, however its
 * height changes (new messages, updated ones, images that load). */
const pinnedAt = new Map();  // scroller → where the page last scrolled it to itself

function followBottom(scroller, content) {
  scroller.addEventListener("scroll", () => {
    if (nearBottom(scroller)) scroller.dataset.stuck = "yes";
    else if (scroller.scrollTop < (pinnedAt.get(scroller) || 0) - 4) scroller.dataset.stuck = "";  // scrolled up
  });
  new ResizeObserver(() => { if (scroller.dataset.stuck) pin(scroller); }).observe(content);
}

function pin(scroller) {
  scroller.scrollTop = scroller.scrollHeight;
  pinnedAt.set(scroller, scroller.scrollTop);
}

function stickToBottom(scroller) {
  scroller.dataset.stuck = "yes";
  pin(scroller);
}

function placeMessage(container, rendered, message, inThread) {
  const element = renderMessage(message, inThread);
  const old = rendered.get(message.ts);
  if (old) {
    old.replaceWith(element);
    rendered.set(message.ts, element);
    return element;
  }
  rendered.set(message.ts, element);
  let next = null;
  const last = container.lastElementChild;
  if (last && Number(last.dataset.ts) > Number(message.ts)) {
    for (const child of container.children) {
      if (Number(child.dataset.ts) > Number(message.ts)) { next = child; break; }
    }
  }
  container.insertBefore(element, next);
  return element;
}

async function loadConversation() {
  const channel = currentChannel();
  delete document.body.dataset.shown;
  state.rendered.clear();
  $("messages").replaceChildren();
  state.oldestTs = null;
  if (!channel) return;
  const data = await api(`/sandbox/conversation?${query({ user: state.me, channel, limit: PAGE_SIZE })}`);
  if (channel !== currentChannel()) return;
  if (channel === "dm") state.dm = data.channel;
  state.unread.delete(data.channel);
  drawMessages(data.messages, data.has_more);
  stickToBottom($("scroller"));
  renderNav();
  document.body.dataset.shown = `${state.me} ${channel}`;  // what is on screen, once it is drawn
}

function drawMessages(messages, hasMore) {
  const container = $("messages");
  messages.forEach((message) => placeMessage(container, state.rendered, message, false));
  if (messages.length) state.oldestTs = messages[0].ts;
  state.hasMore = hasMore;
  $("load-earlier").hidden = !hasMore;
}

async function loadEarlier() {
  const channel = currentChannel();
  if (!channel || !state.hasMore || state.loadingEarlier) return;
  state.loadingEarlier = true;
  try {
    const data = await api(`/sandbox/conversation?${query({ user: state.me, channel, limit: PAGE_SIZE, before: state.oldestTs })}`);
    const scroller = $("scroller");
    const from = scroller.scrollHeight - scroller.scrollTop;
    drawMessages(data.messages, data.has_more);
    scroller.scrollTop = scroller.scrollHeight - from;
  } finally {
    state.loadingEarlier = false;
  }
}

/* While the person follows the newest messages, the page keeps MAX_RENDERED of them; older ones load again
 * when they scroll up. */
function trimRendered() {
  const container = $("messages");
  if (container.children.length <= MAX_RENDERED) return;
  while (container.children.length > MAX_RENDERED) {
    const first = container.firstElementChild;
    state.rendered.delete(first.dataset.ts);
    first.remove();
  }
  state.hasMore = true;
  state.oldestTs = container.firstElementChild.dataset.ts;
  $("load-earlier").hidden = false;
  pin($("scroller"));  // still at the newest message, however the browser moved the view for the removal
}

/* --- threads ------------------------------------------------------------------------------------- */

async function openThread(channel, ts) {
  state.thread = { channel, ts };
  $("thread-messages").replaceChildren();
  $("thread").hidden = false;
  $("thread-where").textContent = channel === state.dm ? state.workspace.app.name : `#${channelName(channel)}`;
  await loadThread();
}

async function loadThread() {
  if (!state.thread) return;
  const { channel, ts } = state.thread;
  const data = await api(`/sandbox/thread?${query({ user: state.me, channel, ts })}`);
  if (!state.thread || state.thread.ts !== ts) return;
  const container = $("thread-messages");
  const fresh = !container.children.length;
  container.replaceChildren();
  state.threadRendered.clear();
  const [parent, ...replies] = data.messages;
  container.append(renderMessage(parent, true));
  container.append(h("div", { class: "replies-rule" }, replies.length === 1 ? "1 reply" : `${replies.length} replies`));
  replies.forEach((reply) => container.append(renderMessage(reply, true)));
  if (fresh) stickToBottom($("thread-scroller"));
}

function closeThread() {
  state.thread = null;
  $("thread").hidden = true;
  $("thread-messages").replaceChildren();
}

/* --- App Home ------------------------------------------------------------------------------------- */

function renderHome() {
  const home = $("home");
  if (!state.home) {
    home.replaceChildren(h("p", { class: "home-empty" }, `Opening ${state.workspace.app.name}'s Home…`));
    return;
  }
  home.replaceChildren(renderBlocks(state.home.blocks, { scope: "view", viewId: state.home.id }));
}

async function openHome() {
  renderHome();
  try {
    await api("/sandbox/home", { user: state.me });
  } catch (error) {
    toast(`Could not open the Home tab: ${error.message}`, true);
  }
}

/* --- modals and confirmations ----------------------------------------------------------------------- */

function renderModal() {
  const overlay = $("modal-overlay");
  const view = state.modal;
  if (!view) {
    overlay.hidden = true;
    overlay.replaceChildren();
    return;
  }
  const form = h("form", { class: "modal", role: "dialog", "aria-modal": "true", dataset: { viewId: view.id } });
  form.append(h("div", { class: "modal-header" },
    h("span", { html: textObject(view.title) }),
    h("button", { type: "button", class: "close", "aria-label": "Close", onclick: () => closeModal(view) }, "×")));
  const body = h("div", { class: "modal-body" }, renderBlocks(view.blocks, { scope: "view", viewId: view.id }),
    h("div", { class: "modal-error", hidden: true }));
  form.append(body);
  const footer = h("div", { class: "modal-footer" },
    h("button", { type: "button", class: "sk-btn", onclick: () => closeModal(view), html: textObject(view.close || { type: "plain_text", text: "Cancel" }) }));
  if (view.submit) footer.append(h("button", { type: "submit", class: "sk-btn primary", html: textObject(view.submit) }));
  form.append(footer);
  form.addEventListener("submit", (event) => { event.preventDefault(); submitModal(view, form); });
  overlay.replaceChildren(form);
  overlay.hidden = false;
  const first = form.querySelector("input, textarea");
  if (first) first.focus();
}

function inputValues(root) {
  const values = {};
  root.querySelectorAll(".b-input").forEach((wrapper) => {
    const field = wrapper.querySelector("input, textarea");
    if (!field) return;
    values[wrapper.dataset.blockId] = { ...(values[wrapper.dataset.blockId] || {}), [field.dataset.actionId]: field.value };
  });
  return values;
}

function showInputError(wrapper, text) {
  const error = wrapper.querySelector(".error");
  wrapper.classList.toggle("invalid", Boolean(text));
  if (error) { error.hidden = !text; error.innerHTML = text ? mrkdwn(text) : ""; }
}

/* What Slack checks before sending a submission: required inputs filled, minimum lengths. */
function checkInputs(form) {
  let ok = true;
  form.querySelectorAll(".b-input").forEach((wrapper) => {
    const field = wrapper.querySelector("input, textarea");
    if (!field) return;
    const text = field.value.trim();
    const minimum = Number(field.dataset.minLength || 0);
    let problem = "";
    if (field.dataset.required && !text) problem = "Please fill out this field.";
    else if (text && minimum && text.length < minimum) problem = `Please enter at least ${minimum} characters.`;
    showInputError(wrapper, problem);
    if (problem) ok = false;
  });
  return ok;
}

async function submitModal(view, form) {
  if (!checkInputs(form)) return;
  const button = form.querySelector(".modal-footer .primary");
  button.classList.add("busy");
  button.disabled = true;
  const banner = form.querySelector(".modal-error");
  banner.hidden = true;
  try {
    const answer = await api("/sandbox/submit", { user: state.me, view_id: view.id, values: inputValues(form) });
    if (answer.errors) {
      form.querySelectorAll(".b-input").forEach((wrapper) => showInputError(wrapper, answer.errors[wrapper.dataset.blockId] || ""));
    } else if (answer.error) {
      banner.textContent = answer.error;
      banner.hidden = false;
    } else if (answer.closed && state.modal && state.modal.id === view.id) {
      state.modal = null;
      renderModal();
    }
  } catch (error) {
    banner.textContent = error.message;
    banner.hidden = false;
  } finally {
    button.classList.remove("busy");
    button.disabled = false;
  }
}

async function closeModal(view) {
  state.modal = null;
  renderModal();
  try {
    await api("/sandbox/close", { user: state.me, view_id: view.id });
  } catch (error) {
    toast(error.message, true);
  }
}

function confirmFirst(confirm) {
  return new Promise((resolve) => {
    const overlay = $("confirm-overlay");
    const done = (answer) => { overlay.hidden = true; overlay.replaceChildren(); resolve(answer); };
    const danger = confirm.style === "danger";
    overlay.replaceChildren(h("div", { class: "modal confirm", role: "alertdialog", "aria-modal": "true" },
      h("div", { class: "modal-header", html: textObject(confirm.title || { type: "plain_text", text: "Are you sure?" }) }),
      h("div", { class: "modal-body", html: textObject(confirm.text) }),
      h("div", { class: "modal-footer" },
        h("button", { type: "button", class: "sk-btn", onclick: () => done(false), html: textObject(confirm.deny || { type: "plain_text", text: "Cancel" }) }),
        h("button", { type: "button", class: danger ? "sk-btn danger solid" : "sk-btn primary", onclick: () => done(true),
          html: textObject(confirm.confirm || { type: "plain_text", text: "Yes" }) }))));
    overlay.hidden = false;
  });
}

/* --- what the person does --------------------------------------------------------------------------- */

async function clickButton(button, element, where) {
  if (element.confirm && !(await confirmFirst(element.confirm))) return;
  if (element.url) window.open(element.url, "_blank", "noopener");
  const request = { user: state.me, block: where.block, element: where.element };
  if (where.scope === "view") {
    request.view_id = where.viewId;
    const root = button.closest(".modal") || $("home");
    request.values = inputValues(root);
  } else {
    Object.assign(request, { channel: where.channel, ts: where.ts, ephemeral: where.ephemeral });
  }
  button.classList.add("busy");
  const holder = button.closest(".msg-body") || button.closest(".blocks");
  holder.querySelectorAll(":scope > .action-error").forEach((note) => note.remove());
  try {
    const answer = await api("/sandbox/action", request);
    if (!answer.delivered) holder.append(h("div", { class: "action-error" }, `⚠️ ${answer.error}`));
  } catch (error) {
    holder.append(h("div", { class: "action-error" }, `⚠️ ${error.message}`));
  } finally {
    button.classList.remove("busy");
  }
}

async function send(text, channel, threadTs) {
  if (text.startsWith("/")) {
    await api("/sandbox/command", { user: state.me, channel, text });
  } else {
    await api("/sandbox/message", { user: state.me, channel, text, thread_ts: threadTs });
  }
}

function composer(form, textarea, target) {
  const submit = async () => {
    const text = textarea.value.trim();
    if (!text) return;
    const where = target();
    if (!where) return;
    textarea.value = "";
    try {
      await send(text, where.channel, where.threadTs);
    } catch (error) {
      textarea.value = text;
      toast(error.message, true);
    }
  };
  form.addEventListener("submit", (event) => { event.preventDefault(); submit(); });
  textarea.addEventListener("keydown", (event) => {
    if (event.key === "Enter" && !event.shiftKey) { event.preventDefault(); submit(); }
  });
}

/* --- keeping up with changes ------------------------------------------------------------------------- */

function applyChanges(changes) {
  if (changes.reset) { reloadAll(); return; }
  const channel = currentChannel();
  const shownChannel = channel === "dm" ? state.dm : channel;
  let threadChanged = false;
  for (const message of changes.messages) {
    const reply = message.thread_ts && message.thread_ts !== message.ts;
    if (state.thread && message.channel === state.thread.channel
        && (message.ts === state.thread.ts || message.thread_ts === state.thread.ts)) threadChanged = true;
    if (reply) continue;
    if (message.channel === shownChannel) {
      const known = state.rendered.has(message.ts);
      const inWindow = !state.hasMore || !state.oldestTs || Number(message.ts) >= Number(state.oldestTs);
      if (known || inWindow) {
        const element = placeMessage($("messages"), state.rendered, message, false);
        if (!known && message.kind !== "message") element.classList.add("flash");
      }
    } else if (message.kind !== "refusal" && message.user !== state.me && Number(message.ts) > state.loadedAt
               && !state.counted.has(message.ts)) {
      // A message posted elsewhere since the page was loaded, seen for the first time: unread.
      state.counted.add(message.ts);
      state.unread.set(message.channel, (state.unread.get(message.channel) || 0) + 1);
    }
  }
  for (const removed of changes.removed) {
    const ts = removed.ts || removed.ephemeral;
    const element = state.rendered.get(ts);
    if (element && (!removed.channel || removed.channel === shownChannel)) { element.remove(); state.rendered.delete(ts); }
  }
  if ($("scroller").dataset.stuck) trimRendered();
  if (threadChanged) loadThread();
  if (changes.home) {
    state.home = changes.home;
    if (state.view.kind === "app" && state.view.tab === "home") renderHome();
  }
  if (changes.modal_changed) {
    const opened = changes.modal;
    const same = opened && state.modal && opened.id === state.modal.id && opened.hash === state.modal.hash;
    if (!same) { state.modal = opened; renderModal(); }
  }
  renderNav();
}

async function sync() {
  if (state.syncing) { state.again = true; return; }
  state.syncing = true;
  try {
    do {
      state.again = false;
      const me = state.me;
      const changes = await api(`/sandbox/changes?${query({ user: me, since: state.version })}`);
      if (me !== state.me) break;
      state.version = changes.version;
      applyChanges(changes);
    } while (state.again);
  } catch (error) {
    $("connection").textContent = "reconnecting…";
  } finally {
    state.syncing = false;
  }
}

function listen() {
  if (state.events) state.events.close();
  const events = new EventSource(`/sandbox/events?${query({ since: state.version })}`);
  state.events = events;
  events.onopen = () => { $("connection").textContent = "live"; $("connection").className = "connection live"; };
  events.onerror = () => { $("connection").textContent = "reconnecting…"; $("connection").className = "connection down"; };
  events.onmessage = (event) => { if (Number(event.data) > state.version) sync(); };
  // The sandbox was restarted while the page stayed open: what it showed is gone, so it starts again.
  events.addEventListener("hello", (event) => { if (event.data !== state.workspace.instance) window.location.reload(); });
}

/* --- navigation -------------------------------------------------------------------------------------- */

function renderNav() {
  const list = $("channels");
  list.replaceChildren(...state.workspace.channels.map((channel) => {
    const active = state.view.kind === "channel" && state.view.channel === channel.id;
    const unread = state.unread.get(channel.id) || 0;
    return h("li", {}, h("button", {
      class: `nav-item${active ? " active" : ""}${unread ? " unread" : ""}`, dataset: { channel: channel.id },
      onclick: () => show({ kind: "channel", channel: channel.id }),
    }, h("span", {}, "#"), h("span", {}, channel.name), unread ? h("span", { class: "badge" }, unread) : null));
  }));
  const app = $("app-nav");
  app.classList.toggle("active", state.view.kind === "app");
  const dmUnread = state.dm ? state.unread.get(state.dm) || 0 : 0;
  app.classList.toggle("unread", dmUnread > 0);
  $("app-badge").hidden = !dmUnread;
  $("app-badge").textContent = dmUnread;
}

function show(view) {
  state.view = view;
  const header = $("conv-header");
  const isApp = view.kind === "app";
  $("tabs").hidden = !isApp;
  document.querySelectorAll(".tab").forEach((tab) => tab.classList.toggle("active", isApp && tab.dataset.tab === view.tab));
  const home = isApp && view.tab === "home";
  $("home").hidden = !home;
  $("scroller").hidden = home;
  $("composer").hidden = home;
  if (isApp) {
    header.replaceChildren(h("span", { class: "app-icon" }, "BP"), h("span", {}, state.workspace.app.name),
      h("span", { class: "sub" }, "App"));
  } else {
    header.replaceChildren(h("span", {}, `# ${channelName(view.channel)}`),
      h("span", { class: "sub" }, "Bill messages, their threads and the month's summary"));
  }
  $("composer-text").placeholder = isApp ? `Message ${state.workspace.app.name} — /bill commands work here` : `Message #${channelName(view.channel)} — type /bill help`;
  renderNav();
  if (home) openHome();
  else loadConversation();
}

async function choosePerson(id) {
  state.me = id;
  localStorage.setItem("sandbox-person", id);
  const url = new URL(window.location.href);
  url.searchParams.set("as", id);
  history.replaceState(null, "", url);
  await reloadAll();
}

async function reloadAll() {
  state.unread.clear();
  state.counted.clear();
  state.loadedAt = Date.now() / 1000;
  state.dm = null;
  state.home = null;
  state.modal = null;
  renderModal();
  closeThread();
  const data = await api(`/sandbox/conversation?${query({ user: state.me, channel: "dm", limit: 1 })}`);
  state.dm = data.channel;
  state.version = data.version;
  show(state.view);
  listen();
}

async function start() {
  state.workspace = await api("/sandbox/workspace");
  if (!state.workspace.ready) {  // the app is still starting: its people and its bills come with it
    $("connection").textContent = "starting…";
    setTimeout(() => start().catch(failed), 250);
    return;
  }
  state.workspace.people.forEach((person) => state.people.set(person.id, person));
  $("team").textContent = state.workspace.team.name;
  $("app-name").textContent = state.workspace.app.name;
  const picker = $("person");
  picker.replaceChildren(...state.workspace.people.map((person) =>
    h("option", { value: person.id }, `${person.real_name} — ${person.title || "member"}`)));
  const wanted = new URLSearchParams(window.location.search).get("as") || localStorage.getItem("sandbox-person");
  const first = state.workspace.people.find((person) => person.id === wanted) || state.workspace.people[0];
  picker.value = first.id;
  picker.addEventListener("change", () => choosePerson(picker.value));
  state.view = { kind: "channel", channel: state.workspace.channels[0].id };
  $("app-nav").addEventListener("click", () => show({ kind: "app", tab: "home" }));
  document.querySelectorAll(".tab").forEach((tab) => tab.addEventListener("click", () => show({ kind: "app", tab: tab.dataset.tab })));
  $("thread-close").addEventListener("click", closeThread);
  followBottom($("scroller"), $("messages"));
  followBottom($("thread-scroller"), $("thread-messages"));
  $("load-earlier").querySelector("button").addEventListener("click", loadEarlier);
  new IntersectionObserver((entries) => { if (entries.some((entry) => entry.isIntersecting)) loadEarlier(); },
    { root: $("scroller") }).observe($("load-earlier"));
  composer($("composer"), $("composer-text"), () => ({ channel: currentChannel() === "dm" ? state.dm : currentChannel() }));
  composer($("thread-composer"), $("thread-text"), () => state.thread && ({ channel: state.thread.channel, threadTs: state.thread.ts }));
  document.addEventListener("click", (event) => {
    const link = event.target.closest(".channel-link");
    if (link && state.workspace.channels.some((c) => c.id === link.dataset.channel)) show({ kind: "channel", channel: link.dataset.channel });
  });
  await choosePerson(first.id);
}

function failed(error) {
  toast(`The sandbox could not start: ${error.message}`, true);
}

start().catch(failed);
