fn main() {
    std::process::exit(kindload::run());
}
