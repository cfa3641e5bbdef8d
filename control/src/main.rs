#![forbid(unsafe_code)]

fn main() -> std::process::ExitCode {
    isthmus_control::cli::main()
}
