//! Small real images built offline with umoci and a static busybox, built
//! once per test process and shared by all tests.
//!
//! One OCI layout holds four tags:
//! - `busybox`: one layer with `/bin/busybox` and applet links (`sh`,
//!   `echo`, `cat`, `ls`), so `docker run IMAGE /bin/sh -c 'echo hi'` works;
//! - `app-a`, `app-b`: the busybox layer plus one small layer each, so they
//!   share their base layer;
//! - `big`: the busybox layer plus a layer holding 50 MiB of random bytes
//!   (gzip cannot shrink it).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::Duration;

use rand::RngCore;

use crate::command::run_ok;
use crate::oci::{ImageDigests, Layout};
use crate::paths::run_scratch_dir;
use crate::skip::Skip;
use crate::tools::require_tool;

/// The size of the random file in the `big` image.
pub const BIG_LAYER_BYTES: usize = 50 << 20;

const APPLETS: &[&str] = &["sh", "echo", "cat", "ls", "true"];
const UMOCI_TIMEOUT: Duration = Duration::from_secs(300);

#[derive(Debug)]
pub struct TestImage {
    pub tag: String,
    pub digests: ImageDigests,
}

#[derive(Debug)]
pub struct TestImages {
    pub layout: Layout,
    pub busybox: TestImage,
    pub app_a: TestImage,
    pub app_b: TestImage,
    pub big: TestImage,
}

impl TestImages {
    /// The skopeo source reference for an image: `oci:<layout>:<tag>`.
    pub fn oci_ref(&self, image: &TestImage) -> String {
        format!("oci:{}:{}", self.layout.root.display(), image.tag)
    }

    pub fn all(&self) -> [&TestImage; 4] {
        [&self.busybox, &self.app_a, &self.app_b, &self.big]
    }
}

#[derive(Debug)]
enum Unavailable {
    Skip(Skip),
    Failed(String),
}

/// The test images, built on first use. A Skip when the tools cannot be
/// installed; a panic (a test failure) when building them fails.
pub fn test_images() -> Result<&'static TestImages, Skip> {
    static IMAGES: OnceLock<Result<TestImages, Unavailable>> = OnceLock::new();
    match IMAGES.get_or_init(build) {
        Ok(images) => Ok(images),
        Err(Unavailable::Skip(skip)) => Err(skip.clone()),
        Err(Unavailable::Failed(err)) => panic!("building the test images failed: {err}"),
    }
}

fn build() -> Result<TestImages, Unavailable> {
    require_tool("umoci", "umoci").map_err(Unavailable::Skip)?;
    require_tool("busybox", "busybox-static").map_err(Unavailable::Skip)?;
    let busybox = static_busybox().map_err(Unavailable::Skip)?;
    let started = std::time::Instant::now();
    let images = build_in(&busybox).map_err(Unavailable::Failed)?;
    eprintln!(
        "built test images in {:.1?} at {}",
        started.elapsed(),
        images.layout.root.display()
    );
    Ok(images)
}

fn build_in(busybox: &Path) -> Result<TestImages, String> {
    let work = run_scratch_dir()?.join("images");
    if work.exists() {
        std::fs::remove_dir_all(&work).map_err(|e| format!("clearing {}: {e}", work.display()))?;
    }
    let layout = work.join("layout");
    let rootfs = work.join("rootfs");
    let bin = rootfs.join("bin");
    std::fs::create_dir_all(&bin).map_err(|e| format!("creating {}: {e}", bin.display()))?;
    std::fs::copy(busybox, bin.join("busybox"))
        .map_err(|e| format!("copying {}: {e}", busybox.display()))?;
    for applet in APPLETS {
        std::os::unix::fs::symlink("busybox", bin.join(applet))
            .map_err(|e| format!("linking {applet}: {e}"))?;
    }

    let at = |tag: &str| format!("{}:{tag}", layout.display());
    umoci(&["init", "--layout", &path_str(&layout)?])?;
    umoci(&["new", "--image", &at("busybox")])?;
    umoci(&[
        "insert",
        "--rootless",
        "--image",
        &at("busybox"),
        &path_str(&rootfs)?,
        "/",
    ])?;
    umoci(&[
        "config",
        "--image",
        &at("busybox"),
        "--config.cmd",
        "/bin/sh",
    ])?;

    for (tag, file, content) in [("app-a", "a.txt", "a\n"), ("app-b", "b.txt", "b\n")] {
        let source = work.join(file);
        std::fs::write(&source, content).map_err(|e| format!("writing {file}: {e}"))?;
        add_file_layer(&layout, tag, &source, &format!("/{file}"))?;
    }

    let random = work.join("random.bin");
    write_random(&random, BIG_LAYER_BYTES)?;
    add_file_layer(&layout, "big", &random, "/random.bin")?;
    std::fs::remove_file(&random).map_err(|e| format!("removing {}: {e}", random.display()))?;
    std::fs::remove_dir_all(&rootfs).map_err(|e| format!("removing rootfs: {e}"))?;
    umoci(&["gc", "--layout", &path_str(&layout)?])?;

    let layout = Layout::new(layout);
    let image = |tag: &str| -> Result<TestImage, String> {
        Ok(TestImage {
            tag: tag.to_owned(),
            digests: layout.image(tag)?,
        })
    };
    let images = TestImages {
        busybox: image("busybox")?,
        app_a: image("app-a")?,
        app_b: image("app-b")?,
        big: image("big")?,
        layout: layout.clone(),
    };
    check(&images)?;
    Ok(images)
}

/// Tags `busybox` as `tag` and adds a layer holding `source` at `target`.
fn add_file_layer(layout: &Path, tag: &str, source: &Path, target: &str) -> Result<(), String> {
    let layout = path_str(layout)?;
    umoci(&["tag", "--image", &format!("{layout}:busybox"), tag])?;
    umoci(&[
        "insert",
        "--rootless",
        "--image",
        &format!("{layout}:{tag}"),
        &path_str(source)?,
        target,
    ])
}

/// What the tests rely on: shared base, distinct tops, an incompressible
/// big layer, and every blob intact.
fn check(images: &TestImages) -> Result<(), String> {
    let base = images
        .busybox
        .digests
        .layers
        .first()
        .ok_or("the busybox image has no layer")?;
    for image in [&images.app_a, &images.app_b, &images.big] {
        let layers = &image.digests.layers;
        if layers.len() != 2 || layers[0].digest != base.digest {
            return Err(format!(
                "{} does not sit on the busybox layer: {layers:?}",
                image.tag
            ));
        }
    }
    if images.app_a.digests.layers[1] == images.app_b.digests.layers[1] {
        return Err("app-a and app-b have the same top layer".into());
    }
    let big = &images.big.digests.layers[1];
    if big.size < BIG_LAYER_BYTES as u64 {
        return Err(format!("the big layer compressed to {} bytes", big.size));
    }
    images.layout.verify_all_blobs()?;
    Ok(())
}

fn umoci(args: &[&str]) -> Result<(), String> {
    run_ok(Command::new("umoci").args(args), UMOCI_TIMEOUT).map(drop)
}

fn write_random(path: &Path, len: usize) -> Result<(), String> {
    let mut bytes = vec![0u8; len];
    rand::rng().fill_bytes(&mut bytes);
    std::fs::write(path, &bytes).map_err(|e| format!("writing {}: {e}", path.display()))
}

fn path_str(path: &Path) -> Result<String, String> {
    path.to_str()
        .map(str::to_owned)
        .ok_or_else(|| format!("non-UTF-8 path {}", path.display()))
}

/// `/bin/busybox` if it is statically linked (a dynamic one would not run
/// in an image without a libc).
fn static_busybox() -> Result<PathBuf, Skip> {
    let path = PathBuf::from("/bin/busybox");
    let bytes = std::fs::read(&path)
        .map_err(|e| Skip::new(format!("cannot read {}: {e}", path.display())))?;
    match elf_has_interpreter(&bytes) {
        Some(false) => Ok(path),
        Some(true) => Err(Skip::new(format!(
            "{} is dynamically linked; the busybox-static package is needed",
            path.display()
        ))),
        None => Err(Skip::new(format!("{} is not a 64-bit ELF", path.display()))),
    }
}

/// Whether a 64-bit little-endian ELF has a PT_INTERP program header.
fn elf_has_interpreter(elf: &[u8]) -> Option<bool> {
    if elf.get(..6)? != b"\x7fELF\x02\x01" {
        return None;
    }
    let u16_at = |at: usize| Some(u16::from_le_bytes(elf.get(at..at + 2)?.try_into().ok()?));
    let phoff = u64::from_le_bytes(elf.get(0x20..0x28)?.try_into().ok()?);
    let phentsize = usize::from(u16_at(0x36)?);
    let phnum = usize::from(u16_at(0x38)?);
    let phoff = usize::try_from(phoff).ok()?;
    for i in 0..phnum {
        let at = phoff.checked_add(i.checked_mul(phentsize)?)?;
        let p_type = u32::from_le_bytes(elf.get(at..at + 4)?.try_into().ok()?);
        if p_type == 3 {
            return Some(true);
        }
    }
    Some(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dynamic_executables_have_an_interpreter() {
        let sh = std::fs::read("/bin/sh").expect("read /bin/sh");
        assert_eq!(elf_has_interpreter(&sh), Some(true));
        assert_eq!(elf_has_interpreter(b"#!/bin/sh\n"), None);
    }
}
