//! Embeds the repository's `schemas/<AggregateType>/<EventType>.v<N>.avsc` files, so services
//! carry the schemas they were built with.

use std::path::{Path, PathBuf};

fn main() {
    let manifest = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").expect("CARGO_MANIFEST_DIR"));
    let schemas = manifest.join("../../schemas");
    println!("cargo:rerun-if-changed={}", schemas.display());
    let mut files = Vec::new();
    if let Ok(dirs) = std::fs::read_dir(&schemas) {
        for dir in dirs.flatten().map(|e| e.path()).filter(|p| p.is_dir()) {
            println!("cargo:rerun-if-changed={}", dir.display());
            if dir.file_name().is_some_and(|n| n == "golden") {
                continue;
            }
            for f in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
                let p = f.path();
                if p.extension().is_some_and(|x| x == "avsc") {
                    files.push(p);
                }
            }
        }
    }
    files.sort();
    let mut out = String::from(
        "/// The embedded schema files: (path relative to `schemas/`, text).\n\
         pub static FILES: &[(&str, &str)] = &[\n",
    );
    for f in &files {
        let rel = relative(f, &schemas);
        let abs = f.canonicalize().expect("schema path");
        out.push_str(&format!(
            "    ({rel:?}, include_str!({:?})),\n",
            abs.display().to_string()
        ));
    }
    out.push_str("];\n");
    let dest =
        PathBuf::from(std::env::var("OUT_DIR").expect("OUT_DIR")).join("embedded_schemas.rs");
    std::fs::write(dest, out).expect("write embedded_schemas.rs");
}

fn relative(f: &Path, root: &Path) -> String {
    f.strip_prefix(root)
        .unwrap_or(f)
        .components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect::<Vec<_>>()
        .join("/")
}
