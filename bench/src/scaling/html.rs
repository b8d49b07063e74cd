//! `report.html`: the report of a scaling run as one self-contained page (what a benchopt user
//! opens): a small stylesheet, `report.md` converted to HTML, and every figure's SVG inlined
//! under its title after the tables. Nothing is linked: the file can be mailed or archived
//! alone.
//!
//! The converter knows exactly the Markdown that [`super::report::markdown`] writes: headings
//! (`#`, `##`, `###`), paragraphs, `- ` lists and pipe tables (a header row, a `|---|` row,
//! body rows), with `` `code` `` and `**bold**` inside a line. Everything else is text: every
//! `<`, `>`, `&` and `"` is escaped.

const STYLE: &str = "body{font-family:system-ui,-apple-system,'Segoe UI',sans-serif;margin:2em auto;max-width:1200px;padding:0 1em;color:#222;line-height:1.45}
h1,h2,h3{line-height:1.2}h2{border-bottom:1px solid #ddd;padding-bottom:.2em;margin-top:1.8em}
table{border-collapse:collapse;margin:1em 0;font-size:.9em;display:block;overflow-x:auto}
th,td{border:1px solid #ccc;padding:.3em .6em;text-align:left;vertical-align:top}
th{background:#f3f3f3}tr:nth-child(even) td{background:#fafafa}
code{background:#f2f2f2;padding:0 .25em;border-radius:3px;font-size:.92em}
figure{margin:1.5em 0;border:1px solid #e3e3e3;padding:.5em;background:#fff}
figcaption{font-weight:600;margin-bottom:.4em}figure svg{max-width:100%;height:auto}";

/// Escapes `<`, `>`, `&`, `"` and `'` for HTML text and attribute values.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '&' => out.push_str("&amp;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// One line's inline Markdown: escaped, with `` `code` `` and `**bold**` spans (an unpaired
/// marker stays as text).
pub fn inline(text: &str) -> String {
    let mut out = String::new();
    // Code spans first: their content is literal.
    let parts: Vec<&str> = text.split('`').collect();
    let paired = parts.len() % 2 == 1;
    for (i, part) in parts.iter().enumerate() {
        let last = i + 1 == parts.len();
        if i % 2 == 1 && (paired || !last) {
            out += &format!("<code>{}</code>", escape(part));
        } else {
            if i % 2 == 1 {
                out.push('`');
            }
            out += &bold(&escape(part));
        }
    }
    out
}

fn bold(escaped: &str) -> String {
    let parts: Vec<&str> = escaped.split("**").collect();
    let paired = parts.len() % 2 == 1;
    let mut out = String::new();
    for (i, part) in parts.iter().enumerate() {
        let last = i + 1 == parts.len();
        if i % 2 == 1 && (paired || !last) {
            out += &format!("<strong>{part}</strong>");
        } else {
            if i % 2 == 1 {
                out += "**";
            }
            out += part;
        }
    }
    out
}

/// The cells of a pipe-table row (`| a | b |` → `["a", "b"]`).
fn cells(line: &str) -> Vec<&str> {
    let t = line.trim();
    let t = t.strip_prefix('|').unwrap_or(t);
    let t = t.strip_suffix('|').unwrap_or(t);
    t.split('|').map(str::trim).collect()
}

fn is_separator(line: &str) -> bool {
    let c = cells(line);
    !c.is_empty() && c.iter().all(|c| !c.is_empty() && c.chars().all(|ch| matches!(ch, '-' | ':')))
}

/// `markdown` (the subset above) as HTML body content.
pub fn markdown_to_html(markdown: &str) -> String {
    let lines: Vec<&str> = markdown.lines().collect();
    let mut out = String::new();
    let mut i = 0;
    while i < lines.len() {
        let line = lines[i];
        let t = line.trim();
        if t.is_empty() {
            i += 1;
            continue;
        }
        if let Some((level, text)) = heading(t) {
            out += &format!("<h{level}>{}</h{level}>\n", inline(text));
            i += 1;
        } else if t.starts_with("- ") {
            out += "<ul>\n";
            while i < lines.len() && lines[i].trim().starts_with("- ") {
                out += &format!("<li>{}</li>\n", inline(&lines[i].trim()[2..]));
                i += 1;
            }
            out += "</ul>\n";
        } else if t.starts_with('|') {
            let mut rows = Vec::new();
            while i < lines.len() && lines[i].trim().starts_with('|') {
                rows.push(lines[i]);
                i += 1;
            }
            out += &table(&rows);
        } else {
            let mut para = Vec::new();
            while i < lines.len() {
                let t = lines[i].trim();
                if t.is_empty() || heading(t).is_some() || t.starts_with("- ") || t.starts_with('|') {
                    break;
                }
                para.push(inline(t));
                i += 1;
            }
            out += &format!("<p>{}</p>\n", para.join("\n"));
        }
    }
    out
}

fn heading(t: &str) -> Option<(usize, &str)> {
    ["### ", "## ", "# "].iter().find_map(|p| t.strip_prefix(p).map(|rest| (p.len() - 1, rest.trim())))
}

/// A pipe table: the first row the header where a `|---|` row follows it.
fn table(rows: &[&str]) -> String {
    let mut out = String::from("<table>\n");
    let (head, body) =
        if rows.len() >= 2 && is_separator(rows[1]) { (Some(rows[0]), &rows[2..]) } else { (None, rows) };
    if let Some(h) = head {
        out += "<thead><tr>";
        for c in cells(h) {
            out += &format!("<th>{}</th>", inline(c));
        }
        out += "</tr></thead>\n";
    }
    out += "<tbody>\n";
    for r in body.iter().filter(|r| !is_separator(r)) {
        out += "<tr>";
        for c in cells(r) {
            out += &format!("<td>{}</td>", inline(c));
        }
        out += "</tr>\n";
    }
    out += "</tbody>\n</table>\n";
    out
}

/// An SVG document as inline markup: any XML declaration or doctype before `<svg` dropped.
fn inline_svg(svg: &str) -> &str {
    svg.find("<svg").map_or(svg, |i| &svg[i..]).trim_end()
}

/// The page: the report's content, then a "Plots" section with every `(title, svg)` inlined
/// in order, each in a `<figure>` under its title.
pub fn render(report_md: &str, svgs: &[(String, String)]) -> String {
    let title = report_md
        .lines()
        .find_map(|l| l.trim().strip_prefix("# "))
        .map_or_else(|| "bilevel scaling report".to_string(), |t| t.trim().replace('`', ""));
    let mut html = format!(
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n<title>{}</title>\n<style>\n{STYLE}\n</style>\n</head>\n<body>\n",
        escape(&title)
    );
    html += &markdown_to_html(report_md);
    if !svgs.is_empty() {
        html += "<h2>Plots</h2>\n";
        for (title, svg) in svgs {
            html += &format!("<figure>\n<figcaption>{}</figcaption>\n{}\n</figure>\n", escape(title), inline_svg(svg));
        }
    }
    html += "</body>\n</html>\n";
    html
}
