//! Building C programs (tests/c/*.c and the like, with gcc) and the preload
//! library they run under.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use super::programs::tool_works;

/// The root crate's directory (the workspace root).
pub fn manifest_dir() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// Whether gcc is here (tests that need it say so and pass vacuously
/// without it).
pub fn have_gcc() -> bool {
    static GCC: OnceLock<bool> = OnceLock::new();
    *GCC.get_or_init(|| tool_works("gcc", &["--version"]))
}

/// Compiles the C file `src` into `exe` with the tests' warnings, `extra`
/// flags and tests/c (common.h) on the include path.
pub fn compile_c(src: &Path, exe: &Path, extra: &[&str]) {
    let out = Command::new("gcc")
        .args(["-std=gnu11", "-O1", "-g", "-Wall", "-Wextra"])
        .args(extra)
        .arg("-I")
        .arg(manifest_dir().join("tests").join("c"))
        .arg("-o")
        .arg(exe)
        .arg(src)
        .output()
        .expect("run gcc");
    let name = src.file_name().unwrap_or_default().to_string_lossy();
    assert!(
        out.status.success(),
        "gcc {name} failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Builds `libshmsem_preload.so` once per test process, into the target
/// directory and profile this test binary was built in
/// (`<target>/[<triple>/]<profile>/deps/<test>-*`), and returns its path.
///
/// Running cargo from inside `cargo test` is fine: cargo releases the build
/// directory lock before it runs the test binaries.
pub fn preload_lib() -> &'static Path {
    static LIB: OnceLock<PathBuf> = OnceLock::new();
    LIB.get_or_init(|| {
        let exe = std::env::current_exe().expect("current_exe");
        let deps = exe.parent().expect("test binary in a deps directory");
        let profile_dir = deps.parent().expect("profile directory").to_path_buf();
        let profile = profile_dir
            .file_name()
            .and_then(|n| n.to_str())
            .expect("profile directory name")
            .to_string();
        let mut target_dir = profile_dir
            .parent()
            .expect("target directory")
            .to_path_buf();
        let mut triple = None;
        // Cargo marks the root of a target directory with CACHEDIR.TAG; with
        // --target the profile directories sit one level deeper.
        if !target_dir.join("CACHEDIR.TAG").exists() {
            if let Some(parent) = target_dir.parent() {
                if parent.join("CACHEDIR.TAG").exists() {
                    triple = target_dir
                        .file_name()
                        .and_then(|n| n.to_str())
                        .map(str::to_string);
                    target_dir = parent.to_path_buf();
                }
            }
        }
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_string());
        let mut cmd = Command::new(cargo);
        cmd.arg("build")
            .arg("--manifest-path")
            .arg(manifest_dir().join("Cargo.toml"))
            .args(["-p", "shmsem-preload"])
            .env("CARGO_TARGET_DIR", &target_dir);
        match profile.as_str() {
            "debug" => {}
            "release" => {
                cmd.arg("--release");
            }
            other => {
                cmd.args(["--profile", other]);
            }
        }
        if let Some(triple) = &triple {
            cmd.args(["--target", triple]);
        }
        let out = cmd.output().expect("run cargo build -p shmsem-preload");
        assert!(
            out.status.success(),
            "cargo build -p shmsem-preload failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let lib = profile_dir.join("libshmsem_preload.so");
        assert!(lib.exists(), "{} was not built", lib.display());
        lib
    })
}
