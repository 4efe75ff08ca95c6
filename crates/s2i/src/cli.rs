//! The command line, named exactly as the reference names it so existing scripts keep working.
//! Boolean flags accept Go's forms: `--incremental`, `--incremental=true`, `--incremental=false`.

use std::path::PathBuf;

use clap::builder::TypedValueParser as _;
use clap::{Args, Parser, Subcommand};
use s2i_core::{BuildMethod, PullPolicy};

const ABOUT: &str = "Source-to-Image (s2i): build ready-to-run container images from application source";

const BUILD_EXAMPLES: &str = "Examples:
  # Build an application image from a local directory
  s2i build ./myapp registry.example.com/builders/python:3.12 myapp:latest

  # Build the v1.0 tag of a git repository, from its app/ subdirectory
  s2i build https://example.com/org/app.git#v1.0 my-builder myapp --context-dir app

  # Build an archive
  s2i build ./app.tar.gz my-builder myapp

  # Use scripts from another place and pass environment variables
  s2i build . my-builder myapp -s file://./s2i/bin -e DEBUG=1 -E .env

  # Write a Dockerfile and its context instead of building, or build that Dockerfile right away
  s2i build . my-builder myapp --as-dockerfile out/Dockerfile
  s2i build . my-builder myapp --build-method=dockerfile

  # Print one JSON document describing the result, for scripts
  s2i build . my-builder myapp --output=json --label team=payments";

#[derive(Debug, Parser)]
#[command(name = "s2i", version = crate::VERSION, about = ABOUT, disable_version_flag = true)]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalArgs,
    #[command(subcommand)]
    pub command: Option<Command>,
}

/// Flags valid on every subcommand.
#[derive(Debug, Args, Clone)]
#[command(next_help_heading = "Global options")]
pub struct GlobalArgs {
    /// Engine endpoint (unix:///path or tcp://host:port); default $DOCKER_HOST, else $CONTAINER_HOST, else the first of Docker's and Podman's sockets that answers
    #[arg(short = 'U', long = "url", global = true, value_name = "URL")]
    pub url: Option<String>,
    /// TLS client certificate (default <certdir>/cert.pem)
    #[arg(long, global = true, value_name = "FILE")]
    pub cert: Option<PathBuf>,
    /// TLS client key (default <certdir>/key.pem)
    #[arg(long, global = true, value_name = "FILE")]
    pub key: Option<PathBuf>,
    /// TLS certificate authority (default <certdir>/ca.pem)
    #[arg(long, global = true, value_name = "FILE")]
    pub ca: Option<PathBuf>,
    /// Use TLS without verifying the daemon: encrypted, but anyone on the way can answer (default:
    /// true if $DOCKER_TLS is set; https:// endpoints always use TLS)
    #[arg(long, global = true, num_args = 0..=1, require_equals = true, default_missing_value = "true", value_parser = go_bool, value_name = "BOOL")]
    pub tls: Option<bool>,
    /// Use TLS and verify the daemon against --ca (default: true if $DOCKER_TLS_VERIFY is set)
    #[arg(long, global = true, num_args = 0..=1, require_equals = true, default_missing_value = "true", value_parser = go_bool, value_name = "BOOL")]
    pub tlsverify: Option<bool>,
    /// Verbosity: 0 errors, warnings and script output; 1 progress; 2 details and timings; 3-5 debugging
    #[arg(long, global = true, default_value_t = 0, value_parser = clap::value_parser!(u8).range(0..=5), value_name = "N")]
    pub loglevel: u8,
    #[command(flatten)]
    pub engine: EngineArgs,
    #[command(flatten)]
    pub registry: RegistryArgs,
}

/// How s2i itself talks to registries (valid on every subcommand).
#[derive(Debug, Args, Clone, Default)]
#[command(next_help_heading = "Registry options")]
pub struct RegistryArgs {
    /// PEM file of CA certificates to trust beside the built-in and system roots ($SSL_CERT_FILE is added too), where s2i talks to registries itself: the oci engine's pulls and pushes, and asking a registry why a pull or push failed (a Docker or Podman daemon's own pulls trust its certs.d)
    #[arg(long, global = true, value_name = "PATH")]
    pub ca_file: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Build a new image from source
    Build(Box<BuildArgs>),
    /// Rebuild an image made by s2i, from the source and builder recorded in its labels
    Rebuild(RebuildArgs),
    /// Print the usage of a builder image
    Usage(UsageArgs),
    /// Create the skeleton of a new builder image
    Create(CreateArgs),
    /// Generate a Dockerfile that builds the application with a builder image
    Generate(GenerateArgs),
    /// Print the version of s2i
    Version,
    /// Print a shell completion script (bash, zsh or fish)
    Completion(CompletionArgs),
    /// Copy this s2i binary to DEST, for a step that fills a shared volume with it
    #[command(after_help = COPY_BINARY_EXAMPLES)]
    CopyBinary(CopyBinaryArgs),
    /// Build a source with two builders, run both images, compare what they do
    Verify(Box<VerifyArgs>),
}

/// Flags shared by build, rebuild and usage.
#[derive(Debug, Args, Clone)]
pub struct CommonArgs {
    /// Don't relay the assemble script's standard output (its errors are still shown)
    #[arg(short = 'q', long, num_args = 0..=1, require_equals = true, default_missing_value = "true", default_value = "false", value_parser = go_bool, value_name = "BOOL")]
    pub quiet: bool,
    /// Reuse artifacts of the previous image (the tag) through its save-artifacts script
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true", default_value = "false", value_parser = go_bool, value_name = "BOOL")]
    pub incremental: bool,
    /// With --incremental: keep the artifacts in DIR (save-artifacts runs after the build) and restore them from it, instead of the previous image (a Tekton workspace, a CI cache)
    #[arg(long, value_name = "DIR")]
    pub cache_dir: Option<PathBuf>,
    /// Remove the previous image after a successful incremental build
    #[arg(long = "rm", num_args = 0..=1, require_equals = true, default_missing_value = "true", default_value = "false", value_parser = go_bool, value_name = "BOOL")]
    pub remove_previous: bool,
    /// POST the build result to this URL when the build ends
    #[arg(long, value_name = "URL")]
    pub callback_url: Option<String>,
    /// When to pull the builder image: always, never or if-not-present
    #[arg(short = 'p', long, default_value = "if-not-present", value_parser = pull_policy, value_name = "POLICY")]
    pub pull_policy: PullPolicy,
    /// When to pull the previous image of an incremental build
    #[arg(long, default_value = "if-not-present", value_parser = pull_policy, value_name = "POLICY")]
    pub incremental_pull_policy: PullPolicy,
    /// When to pull the runtime image
    #[arg(long, default_value = "if-not-present", value_parser = pull_policy, value_name = "POLICY")]
    pub runtime_pull_policy: PullPolicy,
    /// Keep the temporary directory (it holds a copy of what assemble was fed)
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true", default_value = "false", value_parser = go_bool, value_name = "BOOL")]
    pub save_temp_dir: bool,
    /// Registry credentials file: a Docker config.json (auths, credHelpers, credsStore) or a .dockercfg (default: $DOCKER_CONFIG/config.json, else ~/.docker/config.json, else ~/.dockercfg)
    #[arg(long, value_name = "PATH")]
    pub dockercfg_path: Option<PathBuf>,
    /// Where scripts, source and artifacts are placed in the container (default: the builder's io.openshift.s2i.destination label, else /tmp)
    #[arg(short = 'd', long, value_name = "DIR")]
    pub destination: Option<String>,
}

#[derive(Debug, Args)]
#[command(after_help = BUILD_EXAMPLES)]
pub struct BuildArgs {
    /// The application source: a local directory, a git repository (path or URL, with an optional
    /// #ref) or a .tar, .tar.gz, .tgz or .zip archive (path or http(s) URL)
    #[arg(value_name = "SOURCE")]
    pub source: Option<String>,
    /// The builder image
    #[arg(value_name = "BUILDER_IMAGE")]
    pub builder: Option<String>,
    /// The tag of the image to create (untagged if omitted)
    #[arg(value_name = "TAG")]
    pub tag: Option<String>,

    #[command(flatten)]
    pub flags: BuildFlags,

    /// Run the image once it is built
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true", default_value = "false", value_parser = go_bool, value_name = "BOOL")]
    pub run: bool,
    /// Read arguments from ./.s2ifile and save them there
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true", default_value = "false", value_parser = go_bool, value_name = "BOOL")]
    pub use_config: bool,
    /// Write a Dockerfile and its context (upload/) to this path instead of building
    #[arg(long, value_name = "PATH")]
    pub as_dockerfile: Option<PathBuf>,
    /// What to print on stdout when the build ends: text (nothing) or json (one JSON document, on failure too)
    #[arg(long, default_value = "text", value_parser = output_format(), value_name = "FORMAT")]
    pub output: OutputFormat,
    /// Write the build's provenance to FILE: an in-toto statement with a SLSA v1 provenance predicate (names, never values, of env entries and secrets)
    #[arg(long, value_name = "FILE")]
    pub provenance: Option<PathBuf>,
    /// Push TAG to its registry once the build succeeds (TAG must name the registry, e.g. registry.example.com/team/app:v1)
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true", default_value = "false", value_parser = go_bool, value_name = "BOOL")]
    pub push: bool,
    #[command(flatten)]
    pub image_outputs: ImageOutputArgs,
}

/// The flags that make a build, shared by `s2i build` and `s2i verify` (which builds twice).
#[derive(Debug, Args, Clone)]
pub struct BuildFlags {
    #[command(flatten)]
    pub common: CommonArgs,
    /// Don't initialise the git submodules of a git source
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true", default_value = "false", value_parser = go_bool, value_name = "BOOL")]
    pub ignore_submodules: bool,
    /// Environment variable for assemble and the image, NAME=VALUE (repeatable)
    #[arg(short = 'e', long = "env", value_name = "NAME=VALUE")]
    pub env: Vec<String>,
    /// Git ref (branch, tag or commit) to build
    #[arg(short = 'r', long = "ref", value_name = "REF")]
    pub git_ref: Option<String>,
    /// User that runs assemble (default: the builder's io.openshift.s2i.assemble-user label, else its USER)
    #[arg(long, value_name = "USER")]
    pub assemble_user: Option<String>,
    /// User that runs assemble-runtime
    #[arg(long, value_name = "USER")]
    pub assemble_runtime_user: Option<String>,
    /// Subdirectory of the source that holds the application
    #[arg(long, value_name = "DIR")]
    pub context_dir: Option<String>,
    /// Regular expression of source paths to leave out ("" leaves out nothing)
    #[arg(long, default_value = r"(^|/)\.git(/|$)", value_name = "REGEX")]
    pub exclude: String,
    /// Scripts location used by --as-dockerfile when the builder does not say
    #[arg(long, default_value = "image:///usr/libexec/s2i", value_name = "URL")]
    pub image_scripts_url: String,
    /// Where to take the builder scripts from first (image://, file:// or http(s)://)
    #[arg(short = 's', long, value_name = "URL")]
    pub scripts_url: Option<String>,
    /// DEPRECATED: use --scripts-url
    #[arg(long, hide = true, value_name = "URL")]
    pub scripts: Option<String>,
    /// DEPRECATED: use --destination
    #[arg(short = 'l', long, hide = true, value_name = "DIR")]
    pub location: Option<String>,
    /// File of NAME=VALUE lines, applied after -e
    #[arg(short = 'E', long, value_name = "FILE")]
    pub environment_file: Option<PathBuf>,
    /// A secret for assemble only, at /run/secrets/NAME, never in the image: id=NAME,src=PATH or id=NAME,env=VAR (repeatable)
    #[arg(long = "secret", value_name = "id=NAME,src=PATH|env=VAR")]
    pub secrets: Vec<String>,
    /// Value of the io.k8s.display-name label (default: the tag)
    #[arg(short = 'n', long, value_name = "NAME")]
    pub application_name: Option<String>,
    /// Value of the io.k8s.description label
    #[arg(long, value_name = "TEXT")]
    pub description: Option<String>,
    /// Uid ranges the assemble user must fall in: N, N-, -N, N-M, comma-separated
    #[arg(short = 'u', long, value_name = "RANGES")]
    pub allowed_uids: Vec<String>,
    /// Make src[:dest] readable during assemble and empty it afterwards (repeatable)
    #[arg(short = 'i', long, value_name = "SRC[:DEST]")]
    pub inject: Vec<String>,
    /// Bind mount host:container[:options] into the build containers (repeatable)
    #[arg(short = 'v', long, value_name = "HOST:CONTAINER[:OPTS]")]
    pub volume: Vec<String>,
    /// Capabilities to drop from the build containers (comma-separated, repeatable)
    #[arg(long, value_delimiter = ',', value_name = "CAP")]
    pub cap_drop: Vec<String>,
    /// Security option of the build containers, as docker takes it: seccomp=unconfined, seccomp=builtin, seccomp=PROFILE.json (Docker's format) or no-new-privileges (repeatable)
    #[arg(long, value_name = "OPT")]
    pub security_opt: Vec<String>,
    /// Build a local directory as it is, even when it is a git repository
    #[arg(short = 'c', long, num_args = 0..=1, require_equals = true, default_missing_value = "true", default_value = "false", value_parser = go_bool, value_name = "BOOL")]
    pub copy: bool,
    /// Image to run the application in, with artifacts copied from the builder
    #[arg(long, value_name = "IMAGE")]
    pub runtime_image: Option<String>,
    /// src[:dest] to copy from the builder to the runtime image (repeatable)
    #[arg(short = 'a', long, value_name = "SRC[:DEST]")]
    pub runtime_artifact: Vec<String>,
    /// Network mode of the build containers (bridge, host, none, container:<id> or a network name)
    #[arg(long, value_name = "MODE")]
    pub network: Option<String>,
    /// How to make the image: standard (run assemble in a container and commit it) or dockerfile (build the --as-dockerfile Dockerfile with the engine's image builder)
    #[arg(long, default_value = "standard", value_parser = build_method, value_name = "METHOD")]
    pub build_method: BuildMethod,
    /// Extra label key=value on the output image, applied after the generated ones (repeatable)
    #[arg(long = "label", value_name = "KEY=VALUE")]
    pub labels: Vec<String>,
    /// Copy symlinks of a local source as symlinks instead of following them
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true", default_value = "false", value_parser = go_bool, value_name = "BOOL")]
    pub keep_symlinks: bool,
    /// Extra /etc/hosts entry host:ip for the build containers (repeatable)
    #[arg(long, value_name = "HOST:IP")]
    pub add_host: Vec<String>,
}

// ---- The engine, and where a built image goes besides the engine's own store ----

/// Which engine builds: the Docker API (Docker, Podman) or the daemonless one (an OCI store and runc).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum EngineChoice {
    // A Docker or Podman daemon, reached at -U/--url or $DOCKER_HOST. (Plain comments: doc
    // comments here would turn every flag's --help into the long layout.)
    #[default]
    Docker,
    // No daemon: images in a local OCI store, build containers run by runc (needs root).
    Oci,
    // Inside a container of the builder itself (a Tekton step), unprivileged: the scripts run
    // as child processes, the image is the builder's layers plus a snapshot of what changed.
    #[value(name = "in-place")]
    InPlace,
}

/// Flags that pick and set up the engine (valid on every subcommand).
#[derive(Debug, Args, Clone, Default)]
#[command(next_help_heading = "Engine options")]
pub struct EngineArgs {
    /// The engine: docker (a Docker or Podman daemon), oci (no daemon: an OCI image store and runc; needs root) or in-place (inside a container of the builder itself, as any user: a Kubernetes pod, a Tekton step)
    #[arg(long = "engine", global = true, env = "S2I_ENGINE", hide_env_values = true, value_enum, default_value = "docker", value_name = "ENGINE")]
    pub kind: EngineChoice,
    /// The OCI engine's image store (default $XDG_DATA_HOME/s2i/oci, else ~/.local/share/s2i/oci)
    #[arg(long, global = true, env = "S2I_OCI_STORE", hide_env_values = true, value_name = "DIR")]
    pub oci_store: Option<PathBuf>,
    /// The OCI runtime of the oci engine (default: runc from PATH)
    #[arg(long, global = true, value_name = "PATH")]
    pub oci_runtime: Option<PathBuf>,
}

/// Where the built image goes besides the engine's store.
#[derive(Debug, Args, Clone, Default)]
#[command(next_help_heading = "Engine options")]
pub struct ImageOutputArgs {
    /// Also write the image as an archive: docker-archive:PATH (docker load reads it) or oci-archive:PATH
    #[arg(long, value_parser = image_archive, value_name = "FORMAT:PATH")]
    pub output_archive: Option<ImageArchive>,
    /// Hand the image built by --engine oci to the Docker or Podman daemon --engine docker would use (-U/--url, $DOCKER_HOST…)
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true", default_value = "false", value_parser = go_bool, value_name = "BOOL")]
    pub load: bool,
    /// With --push: write the pushed image's digest (sha256:…) to FILE (a Tekton result, IMAGE_DIGEST)
    #[arg(long, value_name = "FILE")]
    pub digest_file: Option<PathBuf>,
    /// With --push: write the pushed image's reference (REGISTRY/REPO:TAG) to FILE (a Tekton result, IMAGE_URL)
    #[arg(long, value_name = "FILE")]
    pub image_url_file: Option<PathBuf>,
}

/// `--output-archive FORMAT:PATH`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageArchive {
    pub format: s2i_engine::ArchiveFormat,
    pub path: PathBuf,
}

fn image_archive(s: &str) -> Result<ImageArchive, String> {
    let (format, path) = match s.split_once(':') {
        Some(("docker-archive", p)) => (s2i_engine::ArchiveFormat::DockerArchive, p),
        Some(("oci-archive", p)) => (s2i_engine::ArchiveFormat::OciArchive, p),
        _ => return Err("use docker-archive:PATH or oci-archive:PATH".into()),
    };
    if path.is_empty() {
        return Err("the archive needs a path, e.g. docker-archive:app.tar".into());
    }
    Ok(ImageArchive { format, path: PathBuf::from(path) })
}

#[derive(Debug, Args)]
pub struct RebuildArgs {
    /// An image built by s2i: its labels name the builder and the source
    #[arg(value_name = "IMAGE")]
    pub image: Option<String>,
    /// The tag of the new image (default: IMAGE's, which then points to the new image)
    #[arg(value_name = "NEW_TAG")]
    pub new_tag: Option<String>,
    /// Build this source instead of the one IMAGE's labels name; needed when that is not a git
    /// repository (labels of an image are not trusted to pick a host path)
    #[arg(long, value_name = "SOURCE")]
    pub source: Option<String>,
    #[command(flatten)]
    pub common: CommonArgs,
    /// What to print on stdout when the build ends: text (nothing) or json (one JSON document, on failure too)
    #[arg(long, default_value = "text", value_parser = output_format(), value_name = "FORMAT")]
    pub output: OutputFormat,
}

#[derive(Debug, Args)]
pub struct UsageArgs {
    #[arg(value_name = "IMAGE")]
    pub image: Option<String>,
    #[command(flatten)]
    pub common: CommonArgs,
    /// DEPRECATED and ignored
    #[arg(short = 'l', long, hide = true)]
    pub location: Option<String>,
}

#[derive(Debug, Args)]
pub struct CreateArgs {
    #[arg(value_name = "IMAGE_NAME")]
    pub image_name: Option<String>,
    #[arg(value_name = "DESTINATION")]
    pub destination: Option<PathBuf>,
}

#[derive(Debug, Args)]
#[command(after_help = GENERATE_EXAMPLES)]
pub struct GenerateArgs {
    /// The builder image
    #[arg(value_name = "BUILDER_IMAGE")]
    pub builder: Option<String>,
    /// The Dockerfile to write (a directory ending in / gets a Dockerfile inside); upload/ is written beside it
    #[arg(value_name = "OUTPUT_FILE")]
    pub output: Option<PathBuf>,
    /// Accepted for compatibility; nothing runs
    #[arg(short = 'q', long, hide = true, num_args = 0..=1, require_equals = true, default_missing_value = "true", default_value = "false", value_parser = go_bool, value_name = "BOOL")]
    pub quiet: bool,
    /// Environment variable for assemble and the image, NAME=VALUE (repeatable)
    #[arg(short = 'e', long = "env", value_name = "NAME=VALUE")]
    pub env: Vec<String>,
    /// User that runs assemble (default 1001)
    #[arg(long, value_name = "USER")]
    pub assemble_user: Option<String>,
    /// Accepted for compatibility and ignored
    #[arg(long, hide = true, value_name = "USER")]
    pub assemble_runtime_user: Option<String>,
}

const GENERATE_EXAMPLES: &str = "Examples:
  # Write build/Dockerfile and build/upload/; put the application in build/upload/src
  s2i generate my-builder build/
  docker build -t myapp build/";

/// `s2i copy-binary DEST`.
#[derive(Debug, Args)]
pub struct CopyBinaryArgs {
    /// Where to put the binary: a directory (the binary goes in as DEST/s2i) or a file name in an existing directory; replaced atomically, mode 0755
    #[arg(value_name = "DEST")]
    pub dest: PathBuf,
}

const COPY_BINARY_EXAMPLES: &str = "Examples:
  # A Tekton step of the s2i image fills the shared volume; a later step, in the builder image, runs it
  s2i copy-binary /workspace/bin
  /workspace/bin/s2i version";

#[derive(Debug, Args)]
#[command(after_help = verify_help())]
pub struct VerifyArgs {
    /// The application source, as s2i build takes it
    #[arg(value_name = "SOURCE")]
    pub source: Option<String>,
    /// The builder image of side A
    #[arg(value_name = "BUILDER_A")]
    pub builder_a: Option<String>,
    /// The builder image of side B (none with --twice: only A is built, twice)
    #[arg(value_name = "BUILDER_B")]
    pub builder_b: Option<String>,

    /// Compare two images that exist already instead of building (no SOURCE or builders then)
    #[arg(long, num_args = 2, value_names = ["IMAGE_A", "IMAGE_B"], help_heading = "Verify options")]
    pub images: Vec<String>,
    /// Longest each run may take: a command still running then is stopped (with --http, the app must answer within it)
    #[arg(long, default_value = "30s", value_parser = seconds, value_name = "TIME", help_heading = "Verify options")]
    pub timeout: std::time::Duration,
    /// Run everything N times on each side: what changes between runs of one image is flaky, not a difference
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=100), value_name = "N", help_heading = "Verify options")]
    pub runs: u32,
    /// Also run CMD with /bin/sh -c in a fresh container of each image and compare (repeatable)
    #[arg(long, value_name = "CMD", help_heading = "Verify options")]
    pub exec: Vec<String>,
    /// While the image's command runs, GET PATH (default /) on its PORT once it answers, and compare status, headers and body (repeatable)
    #[arg(long, value_name = "PORT[/PATH]", help_heading = "Verify options")]
    pub http: Vec<String>,
    /// Response header compared by --http (repeatable; replaces the default)
    #[arg(long, default_value = "content-type", value_name = "NAME", help_heading = "Verify options")]
    pub header: Vec<String>,
    /// Regular expression of output to mask before comparing, besides the defaults below (repeatable)
    #[arg(long, value_name = "REGEX", help_heading = "Verify options")]
    pub ignore: Vec<String>,
    /// Mask only what --ignore says, none of the defaults
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true", default_value = "false", value_parser = go_bool, value_name = "BOOL", help_heading = "Verify options")]
    pub no_default_ignores: bool,
    /// Don't run the image's own command (only --exec); --http needs it
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true", default_value = "false", value_parser = go_bool, value_name = "BOOL", help_heading = "Verify options")]
    pub no_run: bool,
    /// Also build SOURCE a second time with BUILDER_A and say whether the two images are identical, and if not, how they differ
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true", default_value = "false", value_parser = go_bool, value_name = "BOOL", help_heading = "Verify options")]
    pub twice: bool,
    /// Print the report as one JSON document on stdout (docs/verify.md), on failure too
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true", default_value = "false", value_parser = go_bool, value_name = "BOOL", help_heading = "Verify options")]
    pub json: bool,

    #[command(flatten)]
    pub flags: BuildFlags,
}

fn verify_help() -> String {
    format!(
        "Exit status: 0 when the outcomes match (what changes between runs on both sides aside), 1 when
they differ (or, with --twice alone, when the two builds differ), 2 on an error.

Default ignores, each replaced by its <name> before comparing (--no-default-ignores drops them):
{}

Examples:
  # Does the app behave the same on the new Python builder?
  s2i verify ./app builders/python:3.11 builders/python:3.13 --http 8080/ --http 8080/healthz

  # Run the app's tests in both images, three times each, to tell flaky tests from real changes
  s2i verify ./app old-builder new-builder --exec 'python -m pytest -q' --runs 3

  # Compare two images that exist already, masking request ids too
  s2i verify --images app:v1 app:v2 --http 8080/ --ignore 'req-[0-9]+'

  # Is the build reproducible? (the OCI engine sets SOURCE_DATE_EPOCH for it)
  s2i verify ./app my-builder --twice --engine oci",
        s2i_core::verify::mask::describe_defaults()
    )
}

/// `--timeout`: seconds, or a number with s, m or h.
fn seconds(s: &str) -> Result<std::time::Duration, String> {
    s2i_core::limits::parse_duration(s).filter(|d| !d.is_zero()).ok_or_else(|| format!("invalid time {s:?}: use seconds, or a number with s, m or h (90s, 10m)"))
}

#[derive(Debug, Args)]
pub struct CompletionArgs {
    #[arg(value_name = "SHELL")]
    pub shell: Vec<String>,
}

/// Go's strconv.ParseBool, which pflag uses for boolean flags.
pub fn go_bool(s: &str) -> Result<bool, String> {
    match s {
        "1" | "t" | "T" | "TRUE" | "true" | "True" => Ok(true),
        "0" | "f" | "F" | "FALSE" | "false" | "False" => Ok(false),
        other => Err(format!("invalid boolean {other:?}: use true or false")),
    }
}

/// What `s2i build` prints on stdout when it ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OutputFormat {
    /// Nothing: stdout is left to the scripts' users.
    #[default]
    Text,
    /// One JSON document describing the outcome, on failure too.
    Json,
}

// Core's enums parse with FromStr; these give clap the flags' own messages (a derived ValueEnum
// would belong to s2i-core, which has no business knowing clap).
fn build_method(s: &str) -> Result<BuildMethod, String> {
    s.parse::<BuildMethod>().map_err(|_| format!("invalid value {s:?}, valid values are: standard or dockerfile"))
}

fn pull_policy(s: &str) -> Result<PullPolicy, String> {
    s.parse::<PullPolicy>().map_err(|_| format!("invalid value {s:?}, valid values are: always, never or if-not-present"))
}

/// `text` or `json`, listed in the help as the reference-style possible values.
fn output_format() -> impl clap::builder::TypedValueParser<Value = OutputFormat> {
    clap::builder::PossibleValuesParser::new(["text", "json"])
        .map(|s| if s == "json" { OutputFormat::Json } else { OutputFormat::Text })
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn the_command_line_is_well_formed() {
        Cli::command().debug_assert();
    }

    #[test]
    fn go_style_booleans_and_short_flags_parse() {
        let cli = Cli::try_parse_from([
            "s2i", "build", "src", "img", "tag", "--incremental=true", "-q", "--rm=false", "-e", "A=1", "-e", "B=2",
            "-p", "never", "--loglevel=2", "--cap-drop", "CHOWN,KILL", "--cap-drop=NET_RAW",
        ])
        .unwrap();
        let Some(Command::Build(b)) = cli.command else { panic!("not build") };
        assert!(b.flags.common.incremental && b.flags.common.quiet && !b.flags.common.remove_previous);
        assert_eq!(b.flags.env, ["A=1", "B=2"]);
        assert_eq!(b.flags.common.pull_policy, PullPolicy::Never);
        assert_eq!(b.flags.cap_drop, ["CHOWN", "KILL", "NET_RAW"]);
        assert_eq!(cli.global.loglevel, 2);
        assert_eq!(b.flags.exclude, r"(^|/)\.git(/|$)");
    }

    #[test]
    fn engine_flags_parse() {
        let cli = Cli::try_parse_from([
            "s2i", "build", "src", "img", "--engine", "oci", "--oci-store", "/s", "--output-archive", "oci-archive:out/a.tar", "--load",
        ])
        .unwrap();
        assert_eq!(cli.global.engine.kind, EngineChoice::Oci);
        assert_eq!(cli.global.engine.oci_store.as_deref(), Some(std::path::Path::new("/s")));
        let Some(Command::Build(b)) = cli.command else { panic!("not build") };
        assert_eq!(b.image_outputs.output_archive, Some(ImageArchive { format: s2i_engine::ArchiveFormat::OciArchive, path: "out/a.tar".into() }));
        assert!(b.image_outputs.load);
        let err = Cli::try_parse_from(["s2i", "build", "s", "i", "--output-archive", "tar:x"]).unwrap_err();
        assert!(err.to_string().contains("docker-archive:PATH or oci-archive:PATH"), "{err}");
        assert!(Cli::try_parse_from(["s2i", "build", "s", "i", "--output-archive", "docker-archive:"]).is_err());
        assert!(Cli::try_parse_from(["s2i", "--engine", "podman", "version"]).is_err());
    }

    #[test]
    fn bad_values_are_refused() {
        let err = Cli::try_parse_from(["s2i", "build", "s", "i", "--pull-policy", "sometimes"]).unwrap_err();
        assert!(err.to_string().contains("valid values are: always, never or if-not-present"), "{err}");
        assert!(Cli::try_parse_from(["s2i", "build", "--incremental=maybe"]).is_err());
        assert!(Cli::try_parse_from(["s2i", "--loglevel", "9", "version"]).is_err());
    }
}
