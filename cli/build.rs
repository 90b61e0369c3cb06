//! Links the `codepilot` binary with packed relative relocations (`-z pack-relative-relocs`, glibc 2.36+).
//!
//! The binary is position independent, and ~75,000 of its pointers are fixed up by the dynamic loader at every
//! start. As `.rela.dyn` entries (24 bytes each) that table alone is 1.8 MB the loader reads, page by page, before
//! `main`; packed (`.relr.dyn`, a bitmap) it is a few kilobytes. The Python extension module is not linked here: its
//! wheel must load on older glibc.

fn main() {
    println!("cargo:rustc-link-arg-bins=-Wl,-z,pack-relative-relocs");
}
