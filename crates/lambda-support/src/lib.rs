//! What the two Lambda functions (rotation and backup) and their AWS adapters share:
//!
//! * [`logging`]: JSON logging set-up for the Lambda binaries.
//! * [`sdk`]: the one description of an AWS SDK error ([`SdkErrorText`]).
//! * [`error`]: the one error type a handler returns, converted to the Lambda `Diagnostic`.
//! * [`env`]: reading configuration from the environment: the one strict boolean parser and the
//!   error that names the variable at fault.
//! * [`help`]: `--help` / `-h` of the Lambda binaries (usage, and nothing started).
//! * [`limits`]: the SDK's bounded retries and timeouts of each function ([`SdkLimits`]).

pub mod env;
pub mod error;
pub mod help;
pub mod limits;
pub mod logging;
pub mod sdk;

pub use env::{parse_bool, ConfigError};
pub use error::{json_type, InvocationError};
pub use help::exit_on_help;
pub use limits::SdkLimits;
pub use logging::init_json_logging;
pub use sdk::{describe_sdk_error, SdkErrorText};
