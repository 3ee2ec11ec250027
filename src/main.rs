fn main() {
    std::process::exit(kindload::commands::run());
}
