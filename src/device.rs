//! `--device auto|cpu|cuda|cuda:N`: which device runs the model.

use std::fmt;
use std::str::FromStr;
use tch::{Cuda, Device};

/// A device as the user names it, before it is checked against the machine.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DeviceChoice {
    /// CUDA device 0 when one is available, else the CPU.
    Auto,
    /// The CPU (all cores, through torch's threads).
    Cpu,
    /// CUDA device N.
    Cuda(usize),
}

/// The error for a CUDA device that this machine does not have; `main` exits with 2 on it.
#[derive(Debug)]
pub struct DeviceUnavailable(pub String);

impl fmt::Display for DeviceUnavailable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for DeviceUnavailable {}

impl FromStr for DeviceChoice {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "auto" => Ok(DeviceChoice::Auto),
            "cpu" => Ok(DeviceChoice::Cpu),
            "cuda" => Ok(DeviceChoice::Cuda(0)),
            _ => s
                .strip_prefix("cuda:")
                .and_then(|n| n.parse().ok())
                .map(DeviceChoice::Cuda)
                .ok_or_else(|| format!("unknown device '{s}': expected auto, cpu, cuda or cuda:N")),
        }
    }
}

impl fmt::Display for DeviceChoice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DeviceChoice::Auto => f.write_str("auto"),
            DeviceChoice::Cpu => f.write_str("cpu"),
            DeviceChoice::Cuda(n) => write!(f, "cuda:{n}"),
        }
    }
}

impl DeviceChoice {
    /// The device of rank `local_rank` of several on one machine: `--device cuda`
    /// (device 0, or `auto` on a machine with a GPU) puts each rank on its own GPU,
    /// `cuda:LOCAL_RANK`, as torchrun's workers are placed; another `cuda:N` is kept.
    pub fn for_local_rank(self, local_rank: usize) -> DeviceChoice {
        match self {
            DeviceChoice::Cuda(0) => DeviceChoice::Cuda(local_rank),
            DeviceChoice::Auto if Cuda::is_available() => DeviceChoice::Cuda(local_rank),
            other => other,
        }
    }

    /// The torch device, or [`DeviceUnavailable`] when CUDA is asked for and not there.
    pub fn resolve(self) -> Result<Device, DeviceUnavailable> {
        match self {
            DeviceChoice::Cpu => Ok(Device::Cpu),
            DeviceChoice::Auto => Ok(Device::cuda_if_available()),
            DeviceChoice::Cuda(n) => {
                let count = if Cuda::is_available() {
                    Cuda::device_count() as usize
                } else {
                    0
                };
                if n < count {
                    Ok(Device::Cuda(n))
                } else if count == 0 {
                    Err(DeviceUnavailable(format!(
                        "--device {self}: no CUDA device is available on this machine"
                    )))
                } else {
                    Err(DeviceUnavailable(format!(
                        "--device {self}: this machine has {count} CUDA device(s), numbered from 0"
                    )))
                }
            }
        }
    }
}
