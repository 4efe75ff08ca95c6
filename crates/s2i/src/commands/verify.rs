//! `s2i verify SOURCE BUILDER_A BUILDER_B`: build SOURCE with each builder, run both results the
//! same way, and say whether anything a user could notice differs, and why. `--images` compares
//! two images that exist; `--twice` builds A a second time and says whether it is the same image.
//!
//! The builds go into temporary names (`s2i-verify-<random>/a:latest`), removed at the end with
//! every container, also on Ctrl-C. The exit code answers: 0 same, 1 differ, 2 error.

use std::sync::Arc;
use std::time::{Instant, SystemTime};

use s2i_core::config;
use s2i_core::limits::Limits;
use s2i_core::registry::Registries;
use s2i_core::verify::{self, Checks, HttpProbe, Masks, Report, SideInfo, Subject, Twice};
use s2i_core::{BuildConfig, BuildError, Services};
use s2i_engine::Engine;

use crate::cli::{EngineChoice, GlobalArgs, ImageOutputArgs, VerifyArgs};
use crate::json_output::EngineReport;
use crate::ui::{ui, UiReporter};
use crate::verify_output::{self, VerifyDocument};

/// The exit code of an error: a pipeline tells "differ" (1) from "could not tell" (2).
pub const ERROR_EXIT: u8 = 2;

/// What to compare: images to build from one source (B's builder is absent for a `--twice` of
/// one builder), or two images that exist.
enum Sides {
    Build { source: String, a: String, b: Option<String> },
    Images([String; 2]),
}

/// Run the command; `Ok` carries the exit code of the verdict.
pub async fn run(global: &GlobalArgs, args: VerifyArgs) -> Result<u8, BuildError> {
    let json = args.json;
    let started = Instant::now();
    let mut engine_doc = None;
    let outcome = verify(global, args, &mut engine_doc).await;
    match outcome {
        Ok(report) => {
            if json {
                ui().json(&VerifyDocument::report(&report, engine_doc, started.elapsed()));
            } else {
                ui().report(&verify_output::render(&report, ui().report_color()));
            }
            Ok(report.exit_code() as u8)
        }
        Err(e) => {
            if json {
                ui().json(&VerifyDocument::failure(&e, engine_doc, started.elapsed()));
            }
            Err(e)
        }
    }
}

async fn verify(global: &GlobalArgs, args: VerifyArgs, engine_doc: &mut Option<EngineReport>) -> Result<Report, BuildError> {
    let limits = Limits::from_env()?;
    let sides = sides_of(&args)?;
    let checks = checks_of(&args, &limits)?;
    ui().set_quiet(args.flags.common.quiet);
    // Names of this run's images: random, so that runs side by side never meet.
    let run_id = format!("{:08x}", rand::random::<u32>());
    let temp = |side: &str| format!("s2i-verify-{run_id}/{side}:latest");
    let mut configs: Vec<(String, BuildConfig)> = Vec::new();
    if let Sides::Build { source, a, b } = &sides {
        let mut wanted = vec![("A", a)];
        if let Some(b) = b {
            wanted.push(("B", b));
        }
        if args.twice {
            wanted.push(("A2", a));
        }
        // One creation time for the labels of every build of the run: the builds of --twice
        // then differ only where the engine stamps its own time.
        let created = s2i_core::labels::created_now();
        for (side, builder) in wanted {
            let mut cfg = crate::commands::build::config_from_flags(source, builder, args.flags.clone(), limits)?;
            cfg.tag = Some(config::parse_tag(&temp(&side.to_lowercase()))?);
            // The display name defaults to the tag: A's second build takes A's, so that the name
            // it is built under makes no difference of its own.
            if side == "A2" && cfg.application_name.is_none() {
                cfg.application_name = Some(temp("a"));
            }
            // So does the ref.name label, and the created label is the run's.
            if side == "A2" {
                cfg.labels.insert(0, (s2i_core::labels::OCI_REF_NAME.to_string(), temp("a")));
            }
            cfg.labels.insert(0, (s2i_core::labels::OCI_CREATED.to_string(), created.clone()));
            crate::engine::check_flags(global, &cfg, &ImageOutputArgs::default())?;
            configs.push((side.to_string(), cfg));
        }
    }
    let temp_images: Vec<String> = configs.iter().filter_map(|(_, c)| c.tag_name()).collect();
    *engine_doc = Some(crate::engine::report_before_connecting(global));
    // Two builds of one source are the same image only with one creation time for both, which
    // the daemonless engine can be given.
    let fixed_time = (args.twice && global.engine.kind == EngineChoice::Oci).then(reproducible_time);
    let engine = crate::engine::connect_with(global, &limits, fixed_time).await?;
    if let Ok(v) = engine.version().await {
        *engine_doc = Some(EngineReport::answered(&v));
    }
    let work = build_and_compare(&engine, &sides, configs, &checks, &limits);
    super::interruptible_removing(Some(&*engine), &limits, &temp_images, work).await
}

/// The one creation time of both builds of `--twice`: this second, in whole seconds
/// (`SOURCE_DATE_EPOCH`, when it is set, wins: the engine reads it then).
fn reproducible_time() -> SystemTime {
    let now = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
    SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(now)
}

/// The two sides the arguments name, checked before any work.
fn sides_of(args: &VerifyArgs) -> Result<Sides, BuildError> {
    let given = |v: &Option<String>| v.as_deref().filter(|s| !s.trim().is_empty()).map(str::to_string);
    let (source, a, b) = (given(&args.source), given(&args.builder_a), given(&args.builder_b));
    if args.flags.common.callback_url.as_deref().is_some_and(|u| !u.is_empty()) {
        return Err(BuildError::conflict("--callback-url", "s2i verify, whose builds are its own"));
    }
    if !args.images.is_empty() {
        if source.is_some() || a.is_some() {
            return Err(BuildError::conflict("--images", "SOURCE and builders: it compares two images that exist"));
        }
        if args.twice {
            return Err(BuildError::conflict("--twice", "--images, which builds nothing"));
        }
        return Ok(Sides::Images([args.images[0].clone(), args.images[1].clone()]));
    }
    let usage = || BuildError::InvalidValue {
        what: "arguments",
        value: String::new(),
        reason: "s2i verify needs SOURCE BUILDER_A BUILDER_B, SOURCE BUILDER_A --twice, or --images IMAGE_A IMAGE_B; see s2i verify --help".into(),
    };
    let (Some(source), Some(a)) = (source, a) else { return Err(usage()) };
    if b.is_none() {
        if !args.twice {
            return Err(usage());
        }
        if !args.exec.is_empty() || !args.http.is_empty() || args.runs > 1 {
            return Err(BuildError::conflict("--exec, --http and --runs", "a --twice of one builder, which runs nothing: name BUILDER_B to compare what two builders' images do"));
        }
    }
    Ok(Sides::Build { source, a, b })
}

fn checks_of(args: &VerifyArgs, limits: &Limits) -> Result<Checks, BuildError> {
    if args.no_run && !args.http.is_empty() {
        return Err(BuildError::conflict("--http", "--no-run: the requests go to the image's own command while it runs"));
    }
    if args.no_run && args.exec.is_empty() && (args.builder_b.is_some() || !args.images.is_empty()) {
        return Err(BuildError::InvalidValue { what: "--no-run", value: "true".into(), reason: "with no --exec there is nothing left to run".into() });
    }
    let http = args.http.iter().map(|h| h.parse::<HttpProbe>()).collect::<Result<Vec<_>, _>>()?;
    let mut headers = Vec::new();
    for h in &args.header {
        let name = h.trim().to_ascii_lowercase();
        if name.is_empty() || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_".contains(&b)) {
            return Err(BuildError::InvalidValue { what: "--header", value: h.clone(), reason: "use a header name, e.g. content-type".into() });
        }
        headers.push(name);
    }
    Ok(Checks {
        run: !args.no_run,
        timeout: args.timeout,
        runs: args.runs,
        execs: args.exec.clone(),
        http,
        headers,
        masks: Masks::new(!args.no_default_ignores, &args.ignore)?,
        limits: *limits,
    })
}

/// Build what is to be built, run the checks and examine the images.
async fn build_and_compare(engine: &crate::engine::Connected, sides: &Sides, configs: Vec<(String, BuildConfig)>, checks: &Checks, limits: &Limits) -> Result<Report, BuildError> {
    let engine: &dyn Engine = &**engine;
    let reporter: Arc<dyn s2i_core::Reporter> = Arc::new(UiReporter(ui().clone()));
    let mut infos: Vec<SideInfo> = Vec::new();
    for (side, cfg) in &configs {
        let tag = cfg.tag_name().unwrap_or_default();
        ui().line(&format!("Building side {side} with {} as {tag}", cfg.builder_image));
        let id = build_side(engine, cfg, limits, reporter.clone()).await.map_err(|e| side_error(side, &cfg.builder_image, e))?;
        infos.push(SideInfo { side: side.clone(), image: tag, id, builder: Some(cfg.builder_image.clone()) });
    }
    if let Sides::Images(images) = sides {
        for (side, image) in ["A", "B"].iter().zip(images) {
            let missing = || side_error(side, image, BuildError::Engine(s2i_engine::EngineError::ImageNotFound(image.clone())));
            let id = engine.inspect_image(image).await.map_err(|e| side_error(side, image, e.into()))?.ok_or_else(missing)?.id;
            infos.push(SideInfo { side: side.to_string(), image: image.clone(), id, builder: None });
        }
    }
    let find = |side: &str| infos.iter().find(|i| i.side == side);
    let examine = |info: &SideInfo| {
        let info = info.clone();
        async move {
            let side = info.side.clone();
            let image = info.image.clone();
            verify::examine(engine, &image, limits).await.map_err(|e| side_error(&side, &image, e))
        }
    };
    let (mut outcomes, mut image_diff, mut twice) = (None, None, None);
    let mut facts_a = None;
    if let (Some(a), Some(b)) = (find("A"), find("B")) {
        ui().line(&format!("Running both images: {} run{} on each side", checks.runs, if checks.runs == 1 { "" } else { "s" }));
        let subjects = [Subject { image: a.image.clone(), name_base: a.image.clone() }, Subject { image: b.image.clone(), name_base: b.image.clone() }];
        let seen = verify::observe_both(engine, [&subjects[0], &subjects[1]], checks).await?;
        outcomes = Some(verify::Outcomes::new(checks.runs, checks.masks.infos(), verify::compare(&seen[0], &seen[1])));
        ui().line("Comparing the images");
        let (fa, fb) = (examine(a).await?, examine(b).await?);
        image_diff = Some(verify::diff::diff_images(&fa, &fb, [&a.image, &b.image]));
        facts_a = Some(fa);
    }
    if let (Some(a), Some(a2)) = (find("A"), find("A2")) {
        ui().line("Comparing the two builds of side A");
        let first = match facts_a {
            Some(f) => f,
            None => examine(a).await?,
        };
        twice = Some(Twice::new(&first, &examine(a2).await?));
    }
    Ok(Report::new(infos, outcomes, image_diff, twice))
}

/// Build one side into its temporary tag. With `--incremental`, a clean build comes first and
/// the incremental one builds on it (which removes it): what is compared is what an incremental
/// build gives with each builder.
async fn build_side(engine: &dyn Engine, cfg: &BuildConfig, limits: &Limits, reporter: Arc<dyn s2i_core::Reporter>) -> Result<String, BuildError> {
    let services = |reporter: Arc<dyn s2i_core::Reporter>| Services { engine, registries: Registries::new(cfg.dockercfg_path.clone(), limits), reporter };
    if cfg.incremental {
        let clean = BuildConfig { incremental: false, remove_previous: false, ..cfg.clone() };
        s2i_core::build(&clean, &services(reporter.clone())).await?;
        let incremental = BuildConfig { remove_previous: true, ..cfg.clone() };
        return Ok(s2i_core::build(&incremental, &services(reporter)).await?.image_id);
    }
    Ok(s2i_core::build(cfg, &services(reporter)).await?.image_id)
}

fn side_error(side: &str, image: &str, e: BuildError) -> BuildError {
    if matches!(e, BuildError::Interrupted) {
        return e;
    }
    BuildError::VerifySide { side: side.to_string(), image: image.to_string(), source: Box::new(e) }
}
