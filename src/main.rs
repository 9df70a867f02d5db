fn main() {
    std::process::exit(rotor::cli::main());
}
