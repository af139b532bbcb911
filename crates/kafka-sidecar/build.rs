//! Build facts for `GET /admin/info`: the git commit, when the build ran, and the compiler.
//!
//! Never fails the build: without git or a `.git` directory (a Docker context, a source tarball)
//! the commit is `GIT_COMMIT` from the environment if set, else `unknown`. The script reruns only
//! when HEAD or the branch it points at moves (not on every source change), so the build time is
//! when the script last ran; `SOURCE_DATE_EPOCH` pins it for reproducible builds.

use std::path::PathBuf;
use std::process::Command;
use std::time::{SystemTime, UNIX_EPOCH};

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-env-changed=GIT_COMMIT");
    println!("cargo:rerun-if-env-changed=SOURCE_DATE_EPOCH");

    let commit = git(&["rev-parse", "HEAD"])
        .or_else(|| std::env::var("GIT_COMMIT").ok().map(|commit| commit.trim().to_string()))
        .filter(|commit| !commit.is_empty())
        .unwrap_or_else(|| "unknown".to_string());
    println!("cargo:rustc-env=BUILD_GIT_COMMIT={commit}");
    watch_git_head();

    let build_time = std::env::var("SOURCE_DATE_EPOCH")
        .ok()
        .and_then(|epoch| epoch.trim().parse::<u64>().ok())
        .unwrap_or_else(|| SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |elapsed| elapsed.as_secs()));
    println!("cargo:rustc-env=BUILD_TIME_UNIX={build_time}");

    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".to_string());
    let rustc_version = run(&rustc, &["--version"]).unwrap_or_else(|| "unknown".to_string());
    println!("cargo:rustc-env=BUILD_RUSTC_VERSION={rustc_version}");
}

/// Reruns the script when HEAD moves: HEAD itself (checkout, detached commits), the branch's loose
/// ref (commits) or, when the branch is packed, `packed-refs` and the folder a loose ref would
/// appear in. Only existing paths are named: cargo reruns every build for a missing one.
fn watch_git_head() {
    let mut paths: Vec<PathBuf> = Vec::new();
    paths.extend(git_path("HEAD"));
    if let Some(branch) = git(&["symbolic-ref", "-q", "HEAD"]) {
        match git_path(&branch) {
            Some(loose) => paths.push(loose),
            None => {
                paths.extend(git_path("packed-refs"));
                if let Some((folder, _)) = branch.rsplit_once('/') {
                    paths.extend(git_path(folder));
                }
            }
        }
    }
    for path in paths {
        println!("cargo:rerun-if-changed={}", path.display());
    }
}

/// A path inside the git directory (worktree-aware), if it exists. Relative paths are relative to
/// the package, both for git (the script runs there) and for cargo.
fn git_path(name: &str) -> Option<PathBuf> {
    git(&["rev-parse", "--git-path", name]).map(PathBuf::from).filter(|path| path.exists())
}

fn git(args: &[&str]) -> Option<String> {
    run("git", args)
}

/// The command's trimmed stdout when it ran and succeeded.
fn run(program: &str, args: &[&str]) -> Option<String> {
    let output = Command::new(program).args(args).output().ok()?;
    if !output.status.success() {
        return None;
    }
    let text = String::from_utf8(output.stdout).ok()?.trim().to_string();
    (!text.is_empty()).then_some(text)
}
