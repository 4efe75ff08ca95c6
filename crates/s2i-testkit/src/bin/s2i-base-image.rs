//! Makes the busybox base image from the host's busybox-static (no registry needed) and prints
//! its name, e.g. to build builders/static-web offline:
//! `docker build --build-arg BASE_IMAGE=$(cargo run -q -p s2i-testkit --bin s2i-base-image) builders/static-web`.
fn main() {
    println!("{}", s2i_testkit::base_image());
}
