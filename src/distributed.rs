//! Training on several processes: PyTorch's c10d engine (a TCPStore rendezvous and a
//! Gloo process group, in the torch wheel's libtorch_cpu) behind a small binding,
//! `csrc/process_group.cpp`. A rank joins from the variables that `torchrun` (or
//! Slurm's `srun`, set by hand) gives every worker: `WORLD_SIZE`, `RANK`,
//! `MASTER_ADDR` and `MASTER_PORT`. Without `WORLD_SIZE`, or with 1, there is no store
//! and no group: one process, as ever.

use anyhow::{anyhow, bail, Result};
use std::time::Duration;
use tch::{Kind, Tensor};

/// The processes a training runs on, and this one's place among them.
pub struct World {
    rank: usize,
    size: usize,
    /// This rank's place on its machine (`LOCAL_RANK`): its GPU when ranks train on GPUs.
    local_rank: usize,
    /// Whether CUDA tensors have a group (NCCL) to be summed in.
    cuda: bool,
    group: Option<Group>,
}

/// What a rank reads from its environment.
#[derive(Debug, PartialEq)]
pub struct Launch {
    /// This process's rank, 0-based.
    pub rank: usize,
    /// How many ranks there are.
    pub size: usize,
    /// Where rank 0 serves the rendezvous.
    pub master_addr: String,
    /// Its port.
    pub master_port: u16,
    /// torchrun's agent serves the rendezvous store (`TORCHELASTIC_USE_AGENT_STORE`),
    /// so rank 0 joins it rather than serving one.
    pub agent_store: bool,
    /// torchrun's restart count: each attempt's keys are kept apart.
    pub attempt: usize,
    /// This rank's place among the ranks of its machine (`LOCAL_RANK`, else `RANK`).
    pub local_rank: usize,
}

impl Launch {
    /// The launch that `vars` (an environment) describes; `None` for one process.
    pub fn from_vars(var: impl Fn(&str) -> Option<String>) -> Result<Option<Launch>> {
        let size = match var("WORLD_SIZE") {
            None => return Ok(None),
            Some(text) => parse_count(&text, "WORLD_SIZE")?,
        };
        if size == 1 {
            return Ok(None);
        }
        let Some(rank) = var("RANK") else {
            bail!("WORLD_SIZE is {size} but RANK is not set; launch the ranks with torchrun, or set RANK, MASTER_ADDR and MASTER_PORT for each");
        };
        let rank: usize = rank
            .trim()
            .parse()
            .map_err(|_| anyhow!("RANK '{rank}' is not a whole number"))?;
        if rank >= size {
            bail!("RANK {rank} is not below WORLD_SIZE {size}");
        }
        let Some(master_addr) = var("MASTER_ADDR") else {
            bail!("WORLD_SIZE is {size} but MASTER_ADDR is not set: the address where rank 0 serves the rendezvous");
        };
        let master_port = match var("MASTER_PORT") {
            None => 29500,
            Some(port) => port
                .trim()
                .parse()
                .map_err(|_| anyhow!("MASTER_PORT '{port}' is not a port number"))?,
        };
        Ok(Some(Launch {
            rank,
            size,
            master_addr,
            master_port,
            agent_store: var("TORCHELASTIC_USE_AGENT_STORE").is_some_and(|v| v == "True"),
            attempt: var("TORCHELASTIC_RESTART_COUNT")
                .and_then(|n| n.trim().parse().ok())
                .unwrap_or(0),
            local_rank: match var("LOCAL_RANK") {
                None => rank,
                Some(text) => text
                    .trim()
                    .parse()
                    .map_err(|_| anyhow!("LOCAL_RANK '{text}' is not a whole number"))?,
            },
        }))
    }
}

fn parse_count(text: &str, name: &str) -> Result<usize> {
    match text.trim().parse::<usize>() {
        Ok(n) if n >= 1 => Ok(n),
        _ => bail!("{name} '{text}' is not a whole number of at least 1"),
    }
}

impl World {
    /// One process: every collective is a no-op.
    pub fn single() -> World {
        World {
            rank: 0,
            size: 1,
            local_rank: 0,
            cuda: false,
            group: None,
        }
    }

    /// Joins the ranks that the environment describes (one process when it describes
    /// none); a collective that waits longer than `timeout` fails.
    pub fn from_env(timeout: Duration) -> Result<World> {
        match Launch::from_vars(|name| std::env::var(name).ok())? {
            None => Ok(World::single()),
            Some(launch) => World::join(&launch, timeout),
        }
    }

    /// Joins the group of `launch`.
    pub fn join(launch: &Launch, timeout: Duration) -> Result<World> {
        let group = Group::new(launch, timeout).map_err(|e| {
            anyhow!(
                "rank {} of {}: cannot join the process group at {}:{}: {e}",
                launch.rank,
                launch.size,
                launch.master_addr,
                launch.master_port
            )
        })?;
        Ok(World {
            rank: launch.rank,
            size: launch.size,
            local_rank: launch.local_rank,
            cuda: false,
            group: Some(group),
        })
    }

    /// Sums CUDA tensors too, this rank on GPU `device`: an NCCL group beside the Gloo
    /// one, on the same rendezvous. One process needs none.
    pub fn use_cuda(&mut self, device: usize) -> Result<()> {
        if let Some(group) = &self.group {
            group
                .use_cuda(device)
                .map_err(|e| anyhow!("rank {} of {}: {e}", self.rank, self.size))?;
        }
        self.cuda = true;
        Ok(())
    }

    /// Whether CUDA tensors can be summed across the ranks (always, for one process).
    pub fn sums_cuda(&self) -> bool {
        self.cuda || self.group.is_none()
    }

    /// This rank's place on its machine (`LOCAL_RANK`).
    pub fn local_rank(&self) -> usize {
        self.local_rank
    }

    /// This process's rank.
    pub fn rank(&self) -> usize {
        self.rank
    }

    /// How many processes train.
    pub fn size(&self) -> usize {
        self.size
    }

    /// Whether this is rank 0, the one that writes the model directory and logs.
    pub fn is_leader(&self) -> bool {
        self.rank == 0
    }

    /// Sums each tensor over the ranks, in place.
    pub fn all_reduce_sum(&self, tensors: &[Tensor]) -> Result<()> {
        match &self.group {
            None => Ok(()),
            Some(group) => group
                .all_reduce_sum(tensors)
                .map_err(|e| self.failed("all-reduce", e)),
        }
    }

    /// Begins summing each tensor (all of one dtype) over the ranks and returns while
    /// the sum is sent, so that the caller computes meanwhile; [`PendingSum::wait`]
    /// gives the sums. Every rank must begin the same sums in the same order.
    pub fn start_all_reduce_sum(&self, tensors: Vec<Tensor>) -> Result<PendingSum> {
        let begun = match &self.group {
            None => None,
            Some(group) => Some(
                group
                    .start_all_reduce_sum(&tensors)
                    .map_err(|e| self.failed("all-reduce", e))?,
            ),
        };
        Ok(PendingSum {
            tensors,
            begun,
            rank: self.rank,
            size: self.size,
        })
    }

    /// Each value summed over the ranks.
    pub fn sum(&self, values: &[f64]) -> Result<Vec<f64>> {
        if self.group.is_none() {
            return Ok(values.to_vec());
        }
        let tensor = Tensor::from_slice(values).to_kind(Kind::Double);
        self.all_reduce_sum(std::slice::from_ref(&tensor))?;
        Ok(Vec::<f64>::try_from(&tensor)?)
    }

    /// Copies rank `root`'s tensors to every rank, in place.
    pub fn broadcast(&self, tensors: &[Tensor], root: usize) -> Result<()> {
        match &self.group {
            None => Ok(()),
            Some(group) => group
                .broadcast(tensors, root)
                .map_err(|e| self.failed("broadcast", e)),
        }
    }

    /// Waits for every rank.
    pub fn barrier(&self) -> Result<()> {
        match &self.group {
            None => Ok(()),
            Some(group) => group.barrier().map_err(|e| self.failed("barrier", e)),
        }
    }

    fn failed(&self, what: &str, e: anyhow::Error) -> anyhow::Error {
        collective_failed(self.rank, self.size, what, e)
    }
}

/// A collective that failed on rank `rank` of `size`, in one line with the likely causes.
fn collective_failed(rank: usize, size: usize, what: &str, e: anyhow::Error) -> anyhow::Error {
    anyhow!(
        "rank {rank} of {size}: {what} failed (another rank died, hung past --dist-timeout, or was started differently): {e}"
    )
}

/// A sum begun by [`World::start_all_reduce_sum`].
pub struct PendingSum {
    tensors: Vec<Tensor>,
    begun: Option<Begun>,
    rank: usize,
    size: usize,
}

impl PendingSum {
    /// Waits for the sum and returns the tensors, summed in place.
    pub fn wait(mut self) -> Result<Vec<Tensor>> {
        if let Some(begun) = self.begun.take() {
            begun
                .finish()
                .map_err(|e| collective_failed(self.rank, self.size, "all-reduce", e))?;
        }
        Ok(std::mem::take(&mut self.tensors))
    }
}

#[cfg(rnnlm_gloo)]
mod binding {
    use std::ffi::{c_char, c_void, CString};

    extern "C" {
        pub fn rnnlm_group_new(
            host: *const c_char,
            port: u16,
            rank: i32,
            size: i32,
            timeout_ms: i64,
            agent_store: bool,
            attempt: *const c_char,
            out: *mut *mut c_void,
        ) -> *mut c_char;
        pub fn rnnlm_group_all_reduce_sum(
            group: *mut c_void,
            tensors: *const *mut c_void,
            n: i64,
        ) -> *mut c_char;
        pub fn rnnlm_group_all_reduce_start(
            group: *mut c_void,
            tensors: *const *mut c_void,
            n: i64,
            out: *mut *mut c_void,
        ) -> *mut c_char;
        pub fn rnnlm_group_all_reduce_finish(pending: *mut c_void) -> *mut c_char;
        pub fn rnnlm_group_pending_free(pending: *mut c_void);
        pub fn rnnlm_group_broadcast(
            group: *mut c_void,
            tensors: *const *mut c_void,
            n: i64,
            root: i32,
        ) -> *mut c_char;
        pub fn rnnlm_group_use_cuda(group: *mut c_void, device: i32) -> *mut c_char;
        pub fn rnnlm_group_barrier(group: *mut c_void) -> *mut c_char;
        pub fn rnnlm_group_free(group: *mut c_void);
    }

    /// The binding's result: `Ok` for a null pointer, else its message (first line).
    pub fn checked(error: *mut c_char) -> anyhow::Result<()> {
        // SAFETY: the binding's result, used once.
        match unsafe { crate::torch_error::binding_error(error) } {
            None => Ok(()),
            Some(message) => Err(anyhow::anyhow!("{message}")),
        }
    }

    pub fn c_string(text: &str) -> anyhow::Result<CString> {
        CString::new(text).map_err(|_| anyhow::anyhow!("'{text}' holds a NUL byte"))
    }
}

/// A c10d Gloo process group (with its store).
#[cfg(rnnlm_gloo)]
struct Group(*mut std::ffi::c_void);

#[cfg(rnnlm_gloo)]
impl Group {
    fn new(launch: &Launch, timeout: Duration) -> Result<Self> {
        let host = binding::c_string(&launch.master_addr)?;
        let attempt = binding::c_string(&launch.attempt.to_string())?;
        let mut group = std::ptr::null_mut();
        // SAFETY: the strings outlive the call, which writes `group` only on success.
        binding::checked(unsafe {
            binding::rnnlm_group_new(
                host.as_ptr(),
                launch.master_port,
                launch.rank as i32,
                launch.size as i32,
                timeout.as_millis() as i64,
                launch.agent_store,
                attempt.as_ptr(),
                &mut group,
            )
        })?;
        Ok(Group(group))
    }

    fn pointers(tensors: &[Tensor]) -> Vec<*mut std::ffi::c_void> {
        tensors
            .iter()
            .map(|t| t.as_ptr() as *mut std::ffi::c_void)
            .collect()
    }

    fn all_reduce_sum(&self, tensors: &[Tensor]) -> Result<()> {
        let pointers = Self::pointers(tensors);
        // SAFETY: every pointer is a live `at::Tensor` borrowed for the call.
        binding::checked(unsafe {
            binding::rnnlm_group_all_reduce_sum(self.0, pointers.as_ptr(), pointers.len() as i64)
        })
    }

    fn start_all_reduce_sum(&self, tensors: &[Tensor]) -> Result<Begun> {
        let pointers = Self::pointers(tensors);
        let mut pending = std::ptr::null_mut();
        // SAFETY: as for all_reduce_sum; the binding keeps its own references to the
        // tensors, and writes `pending` only on success.
        binding::checked(unsafe {
            binding::rnnlm_group_all_reduce_start(
                self.0,
                pointers.as_ptr(),
                pointers.len() as i64,
                &mut pending,
            )
        })?;
        Ok(Begun(pending))
    }

    fn broadcast(&self, tensors: &[Tensor], root: usize) -> Result<()> {
        let pointers = Self::pointers(tensors);
        // SAFETY: as for all_reduce_sum.
        binding::checked(unsafe {
            binding::rnnlm_group_broadcast(
                self.0,
                pointers.as_ptr(),
                pointers.len() as i64,
                root as i32,
            )
        })
    }

    fn barrier(&self) -> Result<()> {
        // SAFETY: the group is live until drop.
        binding::checked(unsafe { binding::rnnlm_group_barrier(self.0) })
    }

    fn use_cuda(&self, device: usize) -> Result<()> {
        // SAFETY: the group is live until drop.
        binding::checked(unsafe { binding::rnnlm_group_use_cuda(self.0, device as i32) })
    }
}

#[cfg(rnnlm_gloo)]
impl Drop for Group {
    fn drop(&mut self) {
        // SAFETY: made by rnnlm_group_new, freed once.
        unsafe { binding::rnnlm_group_free(self.0) }
    }
}

/// A sum under way in the group's threads.
#[cfg(rnnlm_gloo)]
struct Begun(*mut std::ffi::c_void);

#[cfg(rnnlm_gloo)]
impl Begun {
    fn finish(self) -> Result<()> {
        // SAFETY: made by rnnlm_group_all_reduce_start and not yet freed (drop frees it).
        binding::checked(unsafe { binding::rnnlm_group_all_reduce_finish(self.0) })
    }
}

#[cfg(rnnlm_gloo)]
impl Drop for Begun {
    fn drop(&mut self) {
        // SAFETY: made by rnnlm_group_all_reduce_start, freed once; it waits for a sum
        // never finished, whose buffer the group's threads may still write.
        unsafe { binding::rnnlm_group_pending_free(self.0) }
    }
}

/// Without Gloo there is never a sum under way.
#[cfg(not(rnnlm_gloo))]
struct Begun;

#[cfg(not(rnnlm_gloo))]
impl Begun {
    fn finish(self) -> Result<()> {
        unreachable!("a group is never made without Gloo")
    }
}

/// Without Gloo's headers at build time there is no group to join.
#[cfg(not(rnnlm_gloo))]
struct Group;

#[cfg(not(rnnlm_gloo))]
impl Group {
    fn new(launch: &Launch, _timeout: Duration) -> Result<Self> {
        bail!(
            "WORLD_SIZE is {}, but this rnnlm was built without Gloo; install libgloo-dev (make setup does, as root) and rebuild",
            launch.size
        )
    }

    fn all_reduce_sum(&self, _tensors: &[Tensor]) -> Result<()> {
        unreachable!("a group is never made without Gloo")
    }

    fn start_all_reduce_sum(&self, _tensors: &[Tensor]) -> Result<Begun> {
        unreachable!("a group is never made without Gloo")
    }

    fn broadcast(&self, _tensors: &[Tensor], _root: usize) -> Result<()> {
        unreachable!("a group is never made without Gloo")
    }

    fn barrier(&self) -> Result<()> {
        unreachable!("a group is never made without Gloo")
    }

    fn use_cuda(&self, _device: usize) -> Result<()> {
        unreachable!("a group is never made without Gloo")
    }
}

#[cfg(test)]
mod tests {
    use super::Launch;
    use std::collections::HashMap;

    fn launch(vars: &[(&str, &str)]) -> anyhow::Result<Option<Launch>> {
        let vars: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Launch::from_vars(|name| vars.get(name).cloned())
    }

    #[test]
    fn the_environment_describes_one_process_or_a_rank_of_several() {
        assert_eq!(launch(&[]).unwrap(), None);
        assert_eq!(launch(&[("WORLD_SIZE", "1")]).unwrap(), None);
        let two = launch(&[
            ("WORLD_SIZE", "2"),
            ("RANK", "1"),
            ("MASTER_ADDR", "127.0.0.1"),
        ])
        .unwrap()
        .unwrap();
        assert_eq!((two.rank, two.size, two.master_port), (1, 2, 29500));
        // Without LOCAL_RANK a rank is taken to be alone with its ranks on one machine.
        assert_eq!(two.local_rank, 1);
        let on_node = |local: &str| {
            launch(&[
                ("WORLD_SIZE", "4"),
                ("RANK", "3"),
                ("LOCAL_RANK", local),
                ("MASTER_ADDR", "10.0.0.1"),
            ])
        };
        assert_eq!(on_node("1").unwrap().unwrap().local_rank, 1);
        assert!(on_node("one")
            .unwrap_err()
            .to_string()
            .contains("LOCAL_RANK 'one'"));
        let error = |vars: &[(&str, &str)]| launch(vars).unwrap_err().to_string();
        assert!(error(&[("WORLD_SIZE", "2")]).contains("RANK is not set"));
        assert!(error(&[("WORLD_SIZE", "2"), ("RANK", "2")]).contains("not below WORLD_SIZE 2"));
        assert!(error(&[("WORLD_SIZE", "2"), ("RANK", "0")]).contains("MASTER_ADDR is not set"));
        assert!(error(&[("WORLD_SIZE", "0")]).contains("at least 1"));
    }
}
