// Reads {"html": "...", "clients": ["gmail.*", ...]} on stdin; writes the Can I Email findings as JSON:
// [{"feature": title, "support": "none" | "partial", "clients": [...], "notes": [...]}], one entry per
// feature and support level. Run by campaigns/checks/caniemail.py; data: the caniemail npm package.
import { caniemail } from 'caniemail';

let input = '';
process.stdin.setEncoding('utf8');
for await (const chunk of process.stdin) input += chunk;
const { html, clients } = JSON.parse(input);
const result = caniemail({ clients, html });
const found = new Map();
for (const [level, byClient] of [['none', result.issues.errors], ['partial', result.issues.warnings]]) {
  for (const [client, issues] of byClient) {
    for (const issue of issues) {
      const key = level + '\u0000' + issue.title;
      let entry = found.get(key);
      if (!entry) {
        entry = { feature: issue.title, support: level, clients: new Set(), notes: new Set() };
        found.set(key, entry);
      }
      entry.clients.add(client);
      for (const note of issue.notes || []) entry.notes.add(String(note));
    }
  }
}
const out = [...found.values()].map((e) => ({ ...e, clients: [...e.clients].sort(), notes: [...e.notes] }));
process.stdout.write(JSON.stringify(out));
