// Interface strings in English and Chinese; the language follows the browser.

const STRINGS = {
  en: {
    title: "streamrag",
    newChat: "New chat",
    conversations: "Conversations",
    noConversations: "No conversations yet.",
    rename: "Rename",
    delete: "Delete",
    confirmDelete: "Delete?",
    knowledgeBase: "Knowledge base",
    askPlaceholder: "Ask a question about your documents… (Enter sends, Shift+Enter: new line)",
    send: "Send",
    stop: "Stop",
    stopHint: "Stop (Esc)",
    emptyTitle: "Ask your documents",
    emptyHint: "Answers stream with numbered sources. Upload files under “Documents”.",
    condensing: "Understanding the follow-up…",
    retrieving: "Searching the knowledge base…",
    waiting: "Waiting for the model: {ahead} answer(s) before this one…",
    generating: "Writing the answer…",
    reconnecting: "Connection lost, resuming…",
    sources: "Sources",
    noSources: "No matching passages were found.",
    sourceMissing: "This passage is no longer in the knowledge base.",
    document: "Document",
    stopped: "Stopped.",
    truncated: "The answer reached its length limit.",
    moderated: "Content moderation stopped this answer.",
    details: "Run details",
    ttft: "Time to first token",
    total: "Total time",
    tokens: "Tokens (prompt / answer)",
    model: "Model",
    finish: "Finished",
    standalone: "Searched for",
    retrieved: "Retrieved passages",
    errorPrefix: "Something went wrong",
    connectionLost: "The connection was lost and could not be resumed.",
    apiKeyPrompt: "This server needs an API key.",
    apiKeySave: "Save",
    upload: "Upload",
    dropFiles: "Drop files here, or choose them",
    chooseFiles: "Choose files",
    supported: "txt, md, pdf, docx, html, jsonl",
    documents: "Documents",
    noDocuments: "No documents yet.",
    size: "Length",
    characters: "{count} chars",
    chunks: "Chunks",
    date: "Added",
    search: "Search",
    searchPlaceholder: "Search the passages…",
    noHits: "No passages match.",
    degraded: "Semantic search is unavailable right now: ranked by keywords only.",
    uploading: "Uploading {percent}%",
    reading: "Reading…",
    embedding: "Embedding {done}/{total} chunks",
    ingested: "Added",
    unchanged: "Skipped: unchanged",
    failed: "Failed",
    ignored: "Skipped: not a supported file",
    newKb: "New knowledge base…",
    newKbPrompt: "Name of the new knowledge base (letters, digits, . _ -)",
    close: "Close",
    score: "score",
    ms: "{value} ms",
    s: "{value} s",
    citation: "Source {n}",
    citationUnsupported: "This source does not seem to say this",
    citationInferred: "Not cited by the model; this source says it",
    invalidKbName: "“{name}” cannot be a knowledge base name: use letters, digits, _ - or . (not first or last).",
    "error.knowledge_base_not_found": "This knowledge base has no documents yet: upload files to it under “Documents”.",
    "error.invalid_name": "That is not a valid knowledge base name: use letters, digits, _ - or . (not first or last).",
  },
  zh: {
    title: "streamrag",
    newChat: "新对话",
    conversations: "对话",
    noConversations: "还没有对话。",
    rename: "重命名",
    delete: "删除",
    confirmDelete: "确认删除？",
    knowledgeBase: "知识库",
    askPlaceholder: "就你的文档提问……（Enter 发送，Shift+Enter 换行）",
    send: "发送",
    stop: "停止",
    stopHint: "停止（Esc）",
    emptyTitle: "向你的文档提问",
    emptyHint: "回答会逐字显示，并附带编号来源。在“文档”里上传文件。",
    condensing: "正在理解追问……",
    retrieving: "正在检索知识库……",
    waiting: "模型正忙，排队中：前面还有 {ahead} 个回答……",
    generating: "正在生成回答……",
    reconnecting: "连接中断，正在恢复……",
    sources: "来源",
    noSources: "没有找到相关段落。",
    sourceMissing: "该段落已不在知识库中。",
    document: "文档",
    stopped: "已停止。",
    truncated: "回答达到了长度上限。",
    moderated: "内容审核已中止此回答。",
    details: "运行详情",
    ttft: "首字延迟",
    total: "总耗时",
    tokens: "Token（提示 / 回答）",
    model: "模型",
    finish: "结束方式",
    standalone: "检索问题",
    retrieved: "检索到的段落",
    errorPrefix: "出错了",
    connectionLost: "连接已中断，且无法恢复。",
    apiKeyPrompt: "此服务需要 API 密钥。",
    apiKeySave: "保存",
    upload: "上传",
    dropFiles: "把文件拖到这里，或选择文件",
    chooseFiles: "选择文件",
    supported: "txt、md、pdf、docx、html、jsonl",
    documents: "文档",
    noDocuments: "还没有文档。",
    size: "长度",
    characters: "{count} 字",
    chunks: "分块",
    date: "添加时间",
    search: "搜索",
    searchPlaceholder: "搜索段落……",
    noHits: "没有匹配的段落。",
    degraded: "语义检索暂时不可用：仅按关键词排序。",
    uploading: "上传中 {percent}%",
    reading: "读取中……",
    embedding: "向量化 {done}/{total} 块",
    ingested: "已添加",
    unchanged: "已跳过：内容未变",
    failed: "失败",
    ignored: "已跳过：不支持的文件",
    newKb: "新建知识库……",
    newKbPrompt: "新知识库的名称（字母、数字、. _ -）",
    close: "关闭",
    score: "得分",
    ms: "{value} 毫秒",
    s: "{value} 秒",
    citation: "来源 {n}",
    citationUnsupported: "该来源似乎没有这样说",
    citationInferred: "模型未标注引用；该来源支持这句话",
    invalidKbName: "“{name}”不能作为知识库名称：请使用字母、数字、_、- 或 .（. 不能在首尾）。",
    "error.knowledge_base_not_found": "这个知识库还没有文档：请在“文档”里上传文件。",
    "error.unauthorized": "此服务需要有效的 API 密钥。",
    "error.invalid_name": "知识库名称无效：请使用字母、数字、_、- 或 .（. 不能在首尾）。",
    "error.question_too_long": "问题太长，超出了服务的限制。",
    "error.history_too_long": "对话太长，超出了服务的限制：请开始新对话。",
    "error.upload_too_large": "文件超出了服务允许的大小。",
    "error.unsupported_type": "不支持这种文件类型：txt、md、pdf、docx、html、jsonl。",
    "error.upstream_unreachable": "无法连接模型服务。",
    "error.upstream_timeout": "模型服务没有及时响应。",
    "error.upstream_disconnected": "模型服务中断了回答。",
    "error.upstream_error": "模型服务返回了错误。",
    "error.upstream_bad_response": "模型服务返回的内容无法识别。",
    "error.local_model_failed": "内置模型出错。",
    "error.retrieval_failed": "检索知识库失败。",
    "error.internal_error": "服务器内部出错，详情见服务日志。",
  },
};

/** "zh" when the browser prefers Chinese, else "en". */
export function browserLanguage(languages = navigator.languages) {
  for (const tag of languages || [navigator.language]) {
    const base = tag.toLowerCase().split("-")[0];
    if (base in STRINGS) return base;
  }
  return "en";
}

export const language = browserLanguage();

/** The interface string for `key`, with `{name}` placeholders filled from `params`. */
export function t(key, params = {}) {
  const text = STRINGS[language][key] ?? STRINGS.en[key] ?? key;
  return text.replace(/\{(\w+)\}/g, (_, name) => String(params[name] ?? ""));
}

/** An error the service sent (`code`, its English `message`) in the page's language. The
 * server's own message where the page has no words of its own for that code: in English
 * that is most codes, as the server's messages are more precise ("connection reset"). */
export function errorText(code, message) {
  const text = STRINGS[language][`error.${code}`];
  return text ?? message ?? code;
}

/** Fill every `data-i18n` text, `data-i18n-placeholder` and `data-i18n-title` under `root`. */
export function translate(root = document) {
  document.documentElement.lang = language === "zh" ? "zh-CN" : "en";
  for (const node of root.querySelectorAll("[data-i18n]")) node.textContent = t(node.dataset.i18n);
  for (const node of root.querySelectorAll("[data-i18n-placeholder]")) {
    node.placeholder = t(node.dataset.i18nPlaceholder);
  }
  for (const node of root.querySelectorAll("[data-i18n-title]")) {
    node.title = t(node.dataset.i18nTitle);
    node.setAttribute("aria-label", node.title);
  }
}
