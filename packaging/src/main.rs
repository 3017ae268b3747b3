//! `stakeguard-oci`: packages stakeguard.wasm as an OCI image (Wasm artifact variant) and
//! writes it as an OCI image layout directory and a tarball of that layout, then prints
//! the digests a deployment needs.
//!
//! ```text
//! stakeguard-oci --module target/wasm32-wasip1/release/stakeguard_filter.wasm --out out/oci
//! ```

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::Parser;

use stakeguard_packaging::{Image, ImageOptions};

/// Package stakeguard.wasm as an OCI image that Istio's WasmPlugin can pull.
#[derive(Debug, Parser)]
#[command(name = "stakeguard-oci", version, about)]
struct Args {
    /// The module to package.
    #[arg(long, value_name = "M.wasm")]
    module: PathBuf,
    /// The OCI image layout directory to write (replaced if it holds an earlier layout).
    #[arg(long, value_name = "DIR")]
    out: PathBuf,
    /// The tarball of the layout; default `stakeguard-oci.tar` beside the layout directory.
    #[arg(long, value_name = "FILE")]
    tar: Option<PathBuf>,
    /// The image tag.
    #[arg(long, default_value = "0.1.0")]
    tag: String,
    /// Print only the manifest digest's hex (the WasmPlugin `sha256`), for scripts.
    #[arg(long)]
    print_sha256: bool,
}

fn main() -> ExitCode {
    let args = Args::parse();
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("stakeguard-oci: {e}");
            ExitCode::FAILURE
        }
    }
}

fn default_tar(out: &Path) -> PathBuf {
    out.parent()
        .unwrap_or_else(|| Path::new("."))
        .join("stakeguard-oci.tar")
}

fn run(args: &Args) -> Result<(), Box<dyn std::error::Error>> {
    let module = std::fs::read(&args.module)
        .map_err(|e| format!("{}: {e}; build it with `make wasm`", args.module.display()))?;
    let options = ImageOptions {
        tag: args.tag.clone(),
        ..ImageOptions::default()
    };
    let image = Image::new(module, &options)?;
    image.write_layout(&args.out)?;
    let tar_path = args.tar.clone().unwrap_or_else(|| default_tar(&args.out));
    if let Some(parent) = tar_path.parent() {
        std::fs::create_dir_all(parent).map_err(|e| format!("{}: {e}", parent.display()))?;
    }
    std::fs::write(&tar_path, image.tar()?).map_err(|e| format!("{}: {e}", tar_path.display()))?;
    if args.print_sha256 {
        println!("{}", image.manifest_hex());
        return Ok(());
    }
    println!(
        "wrote OCI image layout {} (tag {}) and {}",
        args.out.display(),
        image.tag,
        tar_path.display()
    );
    println!(
        "module   {} ({} bytes)",
        image.module.digest(),
        image.module.bytes.len()
    );
    println!(
        "manifest {} ({} bytes)",
        image.manifest.digest(),
        image.manifest.bytes.len()
    );
    // Istio checks an oci:// image against the manifest digest, an http(s):// module
    // against the module's own sha256.
    println!(
        "WasmPlugin/TrafficExtension sha256 for url oci://...:{}: {}",
        image.tag,
        image.manifest_hex()
    );
    Ok(())
}
