//! `s2i create IMAGE_NAME DESTINATION`: the skeleton of a new builder image.

use s2i_core::BuildError;

use crate::cli::CreateArgs;

pub fn run(args: CreateArgs) -> Result<(), BuildError> {
    let (Some(name), Some(dest)) = (args.image_name.filter(|n| !n.is_empty()), args.destination) else {
        return Err(BuildError::InvalidValue {
            what: "arguments",
            value: String::new(),
            reason: "s2i create needs IMAGE_NAME and DESTINATION; see s2i create --help".into(),
        });
    };
    let done = s2i_core::create::create(&name, &dest)?;
    crate::ui::ui().line(&format!(
        "Created the skeleton of builder image {name} in {} ({} files written{})",
        dest.display(),
        done.written.len(),
        if done.skipped.is_empty() { String::new() } else { format!(", {} existing files kept", done.skipped.len()) }
    ));
    Ok(())
}
