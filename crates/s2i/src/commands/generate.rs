//! `s2i generate BUILDER_IMAGE OUTPUT_FILE`: the `--as-dockerfile` output for a builder image,
//! without a source (the application goes into `upload/src` afterwards).

use s2i_core::{config, BuildConfig, BuildError};

use crate::cli::{GenerateArgs, GlobalArgs};

pub async fn run(global: &GlobalArgs, args: GenerateArgs) -> Result<(), BuildError> {
    let (Some(builder), Some(output)) = (args.builder.filter(|b| !b.trim().is_empty()), args.output) else {
        return Err(BuildError::InvalidValue {
            what: "arguments",
            value: String::new(),
            reason: "s2i generate needs BUILDER_IMAGE and OUTPUT_FILE; see s2i generate --help".into(),
        });
    };
    let env = args.env.iter().map(|e| config::parse_env_flag(e)).collect::<Result<Vec<_>, _>>()?;
    let cfg = BuildConfig {
        builder_image: builder,
        as_dockerfile: Some(output),
        env,
        assemble_user: args.assemble_user.filter(|u| !u.is_empty()),
        limits: s2i_core::limits::Limits::from_env()?,
        ..Default::default()
    };
    // The builder's scripts label, when the local engine has the image, says where its scripts are.
    let info = crate::engine::inspect_if_reachable(global, &cfg.limits, &cfg.builder_image).await;
    let path = super::interruptible(None, &cfg.limits, s2i_core::write_dockerfile(&cfg, info.as_ref(), false)).await?;
    crate::ui::ui().line(&format!("Application dockerfile generated in {}", path.display()));
    Ok(())
}
