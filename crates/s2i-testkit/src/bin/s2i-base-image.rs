//! Makes the busybox base image from the host's busybox-static (no registry needed) and prints
//! its name. The demo uses it to build the example builder image offline.
fn main() {
    println!("{}", s2i_testkit::base_image());
}
