//! The documentation a user of the repository reads: every relative link in every
//! Markdown file resolves to a file of the repository (and an `#anchor` to one of its
//! headings), and no document sends the reader to files only the authors have.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Every `*.md` of the repository, outside build output and installed packages.
fn markdown_files() -> Vec<PathBuf> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        let Ok(entries) = std::fs::read_dir(dir) else { return };
        for e in entries.flatten() {
            let path = e.path();
            let name = e.file_name().to_string_lossy().to_string();
            if path.is_dir() {
                if !matches!(name.as_str(), "target" | "node_modules" | ".git" | "corpus" | "artifacts") {
                    walk(&path, out);
                }
            } else if name.ends_with(".md") {
                out.push(path);
            }
        }
    }
    let mut out = Vec::new();
    walk(&root(), &mut out);
    out.sort();
    out
}

/// The text outside fenced code blocks and inline code spans, line by line.
fn prose_lines(text: &str) -> Vec<String> {
    let mut in_fence = false;
    let mut out = Vec::new();
    for line in text.lines() {
        if line.trim_start().starts_with("```") {
            in_fence = !in_fence;
            continue;
        }
        if in_fence {
            continue;
        }
        // Drop `code spans`: a link inside one is an example, not a link.
        let mut kept = String::new();
        for (i, part) in line.split('`').enumerate() {
            if i % 2 == 0 {
                kept.push_str(part);
            }
        }
        out.push(kept);
    }
    out
}

/// Inline link targets `[text](target)` and reference definitions `[x]: target`.
fn link_targets(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    for line in prose_lines(text) {
        let mut rest = line.as_str();
        while let Some(at) = rest.find("](") {
            let after = &rest[at + 2..];
            let end = after.find(')').unwrap_or(after.len());
            let target = after[..end].split_whitespace().next().unwrap_or("");
            out.push(target.trim_matches(|c| c == '<' || c == '>').to_string());
            rest = &after[end..];
        }
        let t = line.trim_start();
        if t.starts_with('[') {
            if let Some((_, target)) = t.split_once("]: ") {
                out.push(target.split_whitespace().next().unwrap_or("").to_string());
            }
        }
    }
    out
}

/// GitHub's anchors for a file's headings: lower case, punctuation dropped, spaces as
/// hyphens, `-1`, `-2`... for repeats.
fn anchors(text: &str) -> HashSet<String> {
    let mut seen = HashSet::new();
    let mut in_fence = false;
    for line in text.lines() {
        if line.trim_start().starts_with("```") {
            in_fence = !in_fence;
            continue;
        }
        let Some(title) = line.strip_prefix('#').filter(|_| !in_fence) else { continue };
        let title = title.trim_start_matches('#').trim();
        let slug: String = title
            .to_lowercase()
            .chars()
            .filter(|c| c.is_alphanumeric() || *c == ' ' || *c == '-' || *c == '_')
            .map(|c| if c == ' ' { '-' } else { c })
            .collect();
        let mut candidate = slug.clone();
        let mut n = 0;
        while seen.contains(&candidate) {
            n += 1;
            candidate = format!("{slug}-{n}");
        }
        seen.insert(candidate);
    }
    seen
}

fn is_external(target: &str) -> bool {
    target.contains("://") || target.starts_with("mailto:")
}

#[test]
fn every_relative_link_in_the_docs_resolves() {
    let files = markdown_files();
    assert!(files.len() >= 5, "found only {files:?}");
    let mut broken = Vec::new();
    for file in &files {
        let text = std::fs::read_to_string(file).expect("read markdown");
        for target in link_targets(&text) {
            if target.is_empty() || is_external(&target) {
                continue;
            }
            let (path_part, anchor) = target.split_once('#').unwrap_or((&target, ""));
            let dest = if path_part.is_empty() { file.clone() } else { file.parent().expect("folder").join(path_part) };
            let shown = file.strip_prefix(root()).unwrap_or(file).display().to_string();
            if !dest.exists() {
                broken.push(format!("{shown}: ({target}) names no file"));
                continue;
            }
            let is_markdown = dest.extension().is_some_and(|e| e == "md");
            if !anchor.is_empty() && is_markdown {
                let dest_text = std::fs::read_to_string(&dest).expect("read link target");
                if !anchors(&dest_text).contains(anchor) {
                    broken.push(format!("{shown}: ({target}) names no heading of {}", dest.display()));
                }
            }
        }
    }
    assert!(broken.is_empty(), "broken links:\n{}", broken.join("\n"));
}

/// The API reference and the research notes live outside the repository for its
/// authors only; the documents must not send a reader there.
#[test]
fn the_docs_refer_only_to_what_the_repository_has() {
    let mut found = Vec::new();
    for file in markdown_files() {
        let text = std::fs::read_to_string(&file).expect("read markdown");
        for (i, line) in text.lines().enumerate() {
            for outside in ["shared/api.md", "wechat-api.md", "/work/shared", "peers.md", "design.md"] {
                if line.contains(outside) {
                    let shown = file.strip_prefix(root()).unwrap_or(&file).display().to_string();
                    found.push(format!("{shown}:{}: {outside}", i + 1));
                }
            }
        }
    }
    assert!(found.is_empty(), "references to files the repository does not have:\n{}", found.join("\n"));
    let readme = std::fs::read_to_string(root().join("README.md")).expect("README");
    assert!(readme.contains("](docs/api.md)"), "README links the API reference");
}

#[test]
fn the_link_checker_sees_links_and_anchors() {
    let text = "# Top\n## A b, c!\n## A b, c!\nsee [x](y.md#a-b-c-1) and `[no](t)`\n```\n[no](u)\n```\n[r]: z.md\n";
    assert_eq!(link_targets(text), vec!["y.md#a-b-c-1".to_string(), "z.md".to_string()]);
    let a = anchors(text);
    assert!(a.contains("top") && a.contains("a-b-c") && a.contains("a-b-c-1"), "{a:?}");
}
