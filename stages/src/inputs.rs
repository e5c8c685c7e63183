//! Files a stage declares as inputs on behalf of a library: what a
//! tokenizer named in a config consists of, so the engine hashes all of it.

use std::path::Path;

use tailor_engine::FileDecl;
use tailor_model::gguf::is_gguf;

/// Load a tokenizer named in a stage config and declare its files
/// (`tokenizer.json`, and `tokenizer_config.json` when present) as inputs of
/// the stage, relative to the project root.
pub fn tokenizer(root: &Path, path: &Path, pointer: &str) -> Result<(tailor_model::tokenizer::TokenizerFiles, Vec<FileDecl>), String> {
    let rel = |p: &Path| p.strip_prefix(root).unwrap_or(p).to_path_buf();
    if is_gguf(path) {
        let tok = tailor_model::tokenizer::load(&root.join(path))?;
        return Ok((tok, vec![FileDecl { path: path.to_path_buf(), pointer: pointer.to_string() }]));
    }
    let file = tailor_model::tokenizer::tokenizer_json(&root.join(path));
    let tok = tailor_model::tokenizer::load(&file)?;
    let mut files = vec![FileDecl { path: rel(&file), pointer: pointer.to_string() }];
    let cfg = file.with_file_name("tokenizer_config.json");
    if cfg.exists() {
        files.push(FileDecl { path: rel(&cfg), pointer: pointer.to_string() });
    }
    Ok((tok, files))
}
