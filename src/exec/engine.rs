//! The engine: a planned graph plus its arena, runnable many times.
//!
//! The plan (steps with their packed weights, memory offsets) is shared; what a run writes
//! lives in a [`Workspace`] (activation arena and kernel scratch). One workspace serves
//! [`Engine::run`]; [`Engine::run_batch`] runs independent inputs (a frame's tiles) at the
//! same time, one workspace per worker thread, all reading the same weights.

use super::memory::{self, MemoryPlan};
use super::step::{Kernel, Slot, Step};
use crate::model::Graph;
use crate::tensor::Tensor;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Largest activation arena the engine allocates (16 GiB; 1 GiB in a 32-bit address space); a
/// model asking for more is taken as corrupt rather than allowed to abort the process on
/// allocation.
const MAX_ARENA_BYTES: u64 = if usize::BITS >= 64 { 16 << 30 } else { 1 << 30 };

/// Engine settings.
#[derive(Clone, Debug)]
pub struct EngineOptions {
    /// Worker threads (1 = run on the calling thread).
    pub threads: usize,
    /// Run graph passes (fusion, folding, rewrites).
    pub optimize: bool,
    /// Use only the portable reference kernels.
    pub reference_only: bool,
    /// Run QDQ models on int8 kernels (with `optimize`; env `SPECK_INT8=0` also turns it off).
    /// Off: QuantizeLinear / DequantizeLinear run as float fake quantization.
    pub int8: bool,
    /// Run the float convs that take the tiled kernel in fp16 arithmetic where the CPU has it
    /// (aarch64 FEAT_FP16: Raspberry Pi 5, Jetson Orin); ignored elsewhere. Faster there,
    /// outputs within binary16 rounding of f32.
    pub fp16: bool,
}

impl Default for EngineOptions {
    fn default() -> Self {
        EngineOptions {
            threads: 1,
            optimize: true,
            reference_only: false,
            int8: true,
            fp16: false,
        }
    }
}

/// Why a run failed.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// Wrong number of inputs.
    #[error("the model takes {expected} input(s), got {got}")]
    InputCount {
        /// expected
        expected: usize,
        /// given
        got: usize,
    },
    /// Input with the wrong shape or type.
    #[error("input '{name}': expected f32 tensor of shape {expected:?}, got {got}")]
    InputShape {
        /// input name
        name: String,
        /// expected shape
        expected: Vec<usize>,
        /// description of what was given
        got: String,
    },
    /// A kernel failed.
    #[error("node '{node}' ({op}): {source}")]
    Op {
        /// node name
        node: String,
        /// op name
        op: String,
        /// cause
        source: crate::ops::OpError,
    },
    /// Planning failed.
    #[error("cannot plan the graph: {0}")]
    Plan(String),
}

/// Accumulated time of one step over profiled runs.
#[derive(Clone, Debug)]
pub struct StepProfile {
    /// Node name.
    pub node: String,
    /// Op (and kernel) name.
    pub op: String,
    /// Total time.
    pub total: Duration,
}

/// A graph ready to run.
pub struct Engine {
    plan: Plan,
    memory: MemoryPlan,
    scratch_len: usize,
    /// `work[0]` serves `run`; `run_batch` adds one per extra worker, on first use.
    work: Vec<Workspace>,
    pool: rayon::ThreadPool,
    threads: usize,
    profile: Option<Vec<Duration>>,
    /// What the graph passes changed.
    pub pass_log: Vec<String>,
    /// Elements of the constants the graph's nodes read, counted before planning released
    /// the ones only packed kernels need.
    parameters: usize,
    /// Bytes of those parameters as stored ([`Graph::weight_bytes`]).
    weight_bytes: usize,
}

/// Plan every node's step, in order. A constant goes from the graph as soon as its last
/// reader is planned: kernels that prepack their weights (convs, fully connected layers) keep
/// only the packed copy, so the plan does not hold a model's weights twice, and the peak
/// while planning stays near one copy plus the layer being packed. The int8 lowering's integer
/// forms of folded constants are dropped too (the lowering has run). Graph outputs keep theirs.
fn plan_steps(
    graph: &mut Graph,
    slot_in: &dyn Fn(&Graph, usize) -> Slot,
    aliased: &[bool],
    opts: &EngineOptions,
) -> Result<Vec<Step>, RunError> {
    let mut readers_left = vec![0usize; graph.values.len()];
    for n in &graph.nodes {
        for &v in &n.inputs {
            readers_left[v] += 1;
        }
    }
    for &v in &graph.outputs {
        readers_left[v] = usize::MAX; // never released
    }
    for (v, val) in graph.values.iter_mut().enumerate() {
        val.dequantized = None;
        if readers_left[v] == 0 {
            val.constant = None; // read by nothing
        }
    }
    let mut steps = Vec::with_capacity(graph.nodes.len());
    for (i, &aliased) in aliased.iter().enumerate().take(graph.nodes.len()) {
        let n = &graph.nodes[i];
        let mut step = Step::new(
            graph,
            n,
            &|v| slot_in(graph, v),
            opts.reference_only,
            opts.fp16,
        )
        .map_err(|source| RunError::Op {
            node: n.name.clone(),
            op: n.op.name(),
            source,
        })?;
        if aliased {
            // its outputs are views into its input's storage (memory::plan)
            step.kernel = Kernel::View;
        }
        step.release_packed_inputs();
        steps.push(step);
        if let crate::ops::Op::Int8(q) = &mut graph.nodes[i].op {
            q.release_weights();
        }
        for k in 0..graph.nodes[i].inputs.len() {
            let v = graph.nodes[i].inputs[k];
            readers_left[v] = readers_left[v].saturating_sub(1);
            if readers_left[v] == 0 {
                graph.values[v].constant = None;
            }
        }
    }
    Ok(steps)
}

impl Engine {
    /// Plan a graph.
    pub fn new(mut graph: Graph, opts: &EngineOptions) -> Result<Engine, RunError> {
        let pass_log = if opts.optimize {
            crate::passes::prepare(&mut graph, opts.int8)
        } else {
            vec![]
        };
        for line in &pass_log {
            log::info!("{line}");
        }
        if opts.fp16 && !crate::kernels::conv_f32::fp16_supported() {
            log::warn!("fp16 arithmetic asked for, but this CPU has none: float convs run in f32");
        }
        super::footprint::log_rss("after the graph passes");
        let memory = memory::plan(&graph);
        let arena_bytes = (memory.arena_len as u64).saturating_mul(4);
        if arena_bytes > MAX_ARENA_BYTES {
            return Err(RunError::Plan(format!(
                "activations need {:.1} GiB, more than the {} GiB limit (corrupt shapes?)",
                arena_bytes as f64 / (1u64 << 30) as f64,
                MAX_ARENA_BYTES >> 30
            )));
        }
        let slot_in = |graph: &Graph, v: usize| -> Slot {
            let val = &graph.values[v];
            match &val.constant {
                Some(c) => Slot::Const(c.clone()),
                None => Slot::Arena {
                    offset: memory.offsets[v],
                    shape: val.shape.clone(),
                },
            }
        };
        for n in &graph.nodes {
            for &v in &n.inputs {
                if let Some(c) = &graph.values[v].constant {
                    if c.as_f32().is_none() {
                        return Err(RunError::Plan(format!(
                            "node '{}' reads the {} constant '{}' at run time",
                            n.name,
                            c.dtype(),
                            graph.values[v].name
                        )));
                    }
                }
            }
        }
        let (parameters, weight_bytes) = (graph.parameter_count(), graph.weight_bytes());
        let steps = plan_steps(&mut graph, &slot_in, &memory.aliased, opts)?;
        super::footprint::return_free_heap();
        super::footprint::log_rss("after planning the steps");
        let scratch_len = steps.iter().map(Step::scratch_len).max().unwrap_or(0);
        let input_slots = graph
            .inputs
            .iter()
            .map(|&v| {
                (
                    graph.values[v].name.clone(),
                    graph.values[v].shape.clone(),
                    memory.offsets[v],
                )
            })
            .collect();
        let output_slots = graph
            .outputs
            .iter()
            .enumerate()
            .map(|(i, &v)| {
                (
                    graph
                        .output_names
                        .get(i)
                        .unwrap_or(&graph.values[v].name)
                        .clone(),
                    slot_in(&graph, v),
                )
            })
            .collect();
        let threads = opts.threads.max(1);
        // Always a pool of exactly `threads`, also for 1: outside a pool, the kernels' rayon
        // loops would run on the global pool (every core) and `--threads 1` would not be one.
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .map_err(|e| RunError::Plan(format!("thread pool: {e}")))?;
        Ok(Engine {
            work: vec![Workspace::new(memory.arena_len, scratch_len)],
            scratch_len,
            plan: Plan {
                graph: Arc::new(graph),
                steps,
                input_slots,
                output_slots,
            },
            memory,
            pool,
            threads,
            profile: None,
            pass_log,
            parameters,
            weight_bytes,
        })
    }

    /// Load a model file and plan it: a compiled model (`.speck`, recognised by its magic
    /// bytes whatever its name) is decoded directly; anything else is imported as ONNX when
    /// the `onnx` feature is on.
    pub fn load(path: impl AsRef<std::path::Path>, opts: &EngineOptions) -> anyhow::Result<Engine> {
        use anyhow::Context;
        let path = path.as_ref();
        if crate::model::compiled::is_compiled_file(path)? {
            let m = crate::model::compiled::load(path)
                .with_context(|| format!("loading {}", path.display()))?;
            super::footprint::log_rss("after reading the compiled model");
            return Engine::from_compiled(m, opts)
                .with_context(|| format!("planning {}", path.display()));
        }
        #[cfg(feature = "onnx")]
        {
            let g = crate::onnx::load(path, &Default::default())?;
            super::footprint::return_free_heap();
            super::footprint::log_rss("after importing the ONNX model");
            Engine::new(g, opts).with_context(|| format!("planning {}", path.display()))
        }
        #[cfg(not(feature = "onnx"))]
        anyhow::bail!(
            "{} is not a compiled speck model, and this speck was built without the ONNX \
             importer (cargo feature `onnx`); compile the model with `speck compile MODEL.onnx \
             -o MODEL.speck` on a full build",
            path.display()
        )
    }

    /// Plan a compiled model. Its graph is used as stored: graph passes are decided when the
    /// model is compiled (`speck compile --no-optimize`), so `opts.optimize` is not applied.
    pub fn from_compiled(
        m: crate::model::CompiledModel,
        opts: &EngineOptions,
    ) -> Result<Engine, RunError> {
        if !opts.optimize && m.passes_applied {
            log::warn!("graph passes were applied when this model was compiled; compile it with --no-optimize to run without them");
        }
        let opts = EngineOptions {
            optimize: false,
            ..opts.clone()
        };
        let mut e = Engine::new(m.graph, &opts)?;
        e.pass_log = m.pass_log;
        Ok(e)
    }

    /// The planned graph (after passes).
    pub fn graph(&self) -> &Graph {
        &self.plan.graph
    }

    /// Input names and shapes.
    pub fn inputs(&self) -> impl Iterator<Item = (&str, &[usize])> {
        self.plan
            .input_slots
            .iter()
            .map(|(n, s, _)| (n.as_str(), s.as_slice()))
    }

    /// Output names and shapes.
    pub fn outputs(&self) -> impl Iterator<Item = (&str, &[usize])> {
        self.plan
            .output_slots
            .iter()
            .map(|(n, s)| (n.as_str(), s.shape()))
    }

    /// Elements of the model's constants (weights, biases and other parameters).
    pub fn parameter_count(&self) -> usize {
        self.parameters
    }

    /// Bytes of the model's parameters as stored ([`Graph::weight_bytes`], before planning
    /// released the graph's copies).
    pub fn weight_bytes(&self) -> usize {
        self.weight_bytes
    }

    /// Bytes of activation memory (arena plus kernel scratch).
    pub fn activation_bytes(&self) -> usize {
        (self.memory.arena_len + self.scratch_len) * 4
    }

    /// Bytes the activations would take without buffer reuse.
    pub fn unshared_activation_bytes(&self) -> usize {
        self.memory.unshared_len * 4
    }

    /// Worker threads.
    pub fn threads(&self) -> usize {
        self.threads
    }

    /// Start (or reset) per-step timing.
    pub fn enable_profiling(&mut self) {
        self.profile = Some(vec![Duration::ZERO; self.plan.steps.len()]);
    }

    /// Per-step accumulated times, if profiling is on.
    pub fn profile(&self) -> Option<Vec<StepProfile>> {
        let p = self.profile.as_ref()?;
        Some(
            self.plan
                .steps
                .iter()
                .zip(p)
                .map(|(s, t)| StepProfile {
                    node: s.name.clone(),
                    op: s.op_name.clone(),
                    total: *t,
                })
                .collect(),
        )
    }

    /// Run on f32 inputs (one per model input, in order); returns one tensor per output.
    pub fn run(&mut self, inputs: &[Tensor]) -> Result<Vec<Tensor>, RunError> {
        self.run_observed(inputs, None)
    }

    /// Like [`Engine::run`], calling `observer(value_name, tensor)` for every value a step
    /// writes, in execution order (calibration and debugging). With `optimize: false` every
    /// non-constant ONNX tensor is observed under its ONNX name.
    #[allow(clippy::type_complexity)]
    pub fn run_observed(
        &mut self,
        inputs: &[Tensor],
        observer: Option<&mut (dyn FnMut(&str, ndarray::ArrayViewD<f32>) + Send)>,
    ) -> Result<Vec<Tensor>, RunError> {
        self.check_inputs(inputs)?;
        let Engine {
            plan,
            work,
            pool,
            profile,
            ..
        } = self;
        let ws = &mut work[0];
        pool.install(|| {
            crate::kernels::par::with_hot_workers(|| {
                plan.run(ws, inputs, profile.as_mut(), observer)
            })
        })
    }

    /// Run several independent inputs (each one tensor per model input, as for
    /// [`Engine::run`]) at once: each worker thread takes the next input and runs it in its
    /// own workspace, so small models scale over threads where one run's kernels would not.
    /// A kernel's own parallel loops still spread to threads that have run out of inputs.
    /// Extra workspaces (one activation arena each) are allocated on first use and kept.
    /// Results come back in input order; the first failure is returned.
    pub fn run_batch(&mut self, batch: &[Vec<Tensor>]) -> Result<Vec<Vec<Tensor>>, RunError> {
        for inputs in batch {
            self.check_inputs(inputs)?;
        }
        let workers = self.threads.min(batch.len());
        if workers <= 1 {
            return batch.iter().map(|inputs| self.run(inputs)).collect();
        }
        while self.work.len() < workers {
            self.work
                .push(Workspace::new(self.memory.arena_len, self.scratch_len));
        }
        let Engine {
            plan,
            work,
            pool,
            profile,
            ..
        } = self;
        let plan = &*plan;
        let n_steps = plan.steps.len();
        let profiling = profile.is_some();
        // One lock per worker, never contended: worker i only touches workspace i.
        let slots: Vec<Mutex<Worker>> = work[..workers]
            .iter_mut()
            .map(|ws| {
                Mutex::new(Worker {
                    ws,
                    profile: profiling.then(|| vec![Duration::ZERO; n_steps]),
                })
            })
            .collect();
        let results: Vec<Mutex<Option<RunResult>>> =
            batch.iter().map(|_| Mutex::new(None)).collect();
        let next = AtomicUsize::new(0);
        pool.broadcast(|ctx| {
            let Some(slot) = slots.get(ctx.index()) else {
                return;
            };
            let mut guard = slot.lock().unwrap_or_else(|e| e.into_inner());
            let Worker { ws, profile: prof } = &mut *guard;
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(inputs) = batch.get(i) else { break };
                let r = plan.run(ws, inputs, prof.as_mut(), None);
                *results[i].lock().unwrap_or_else(|e| e.into_inner()) = Some(r);
            }
        });
        if let Some(total) = profile.as_mut() {
            for slot in slots {
                let w = slot.into_inner().unwrap_or_else(|e| e.into_inner());
                for (t, p) in total.iter_mut().zip(w.profile.into_iter().flatten()) {
                    *t += p;
                }
            }
        }
        results
            .into_iter()
            .map(|r| {
                r.into_inner()
                    .unwrap_or_else(|e| e.into_inner())
                    .expect("every input is taken by a worker")
            })
            .collect()
    }

    /// Inputs must match the planned names' count, f32 type and shapes.
    fn check_inputs(&self, inputs: &[Tensor]) -> Result<(), RunError> {
        let expected = self.plan.input_slots.len();
        if inputs.len() != expected {
            return Err(RunError::InputCount {
                expected,
                got: inputs.len(),
            });
        }
        for (t, (name, shape, _)) in inputs.iter().zip(&self.plan.input_slots) {
            if t.dtype() != crate::DType::F32 || t.shape() != shape.as_slice() {
                return Err(RunError::InputShape {
                    name: name.clone(),
                    expected: shape.clone(),
                    got: format!("{} tensor of shape {:?}", t.dtype(), t.shape()),
                });
            }
        }
        Ok(())
    }
}

type RunResult = Result<Vec<Tensor>, RunError>;

/// One `run_batch` worker's workspace and its step times.
struct Worker<'a> {
    ws: &'a mut Workspace,
    profile: Option<Vec<Duration>>,
}

/// What one run writes: the activation arena and the kernels' scratch.
struct Workspace {
    arena: Vec<f32>,
    scratch: Vec<f32>,
}

impl Workspace {
    fn new(arena_len: usize, scratch_len: usize) -> Workspace {
        Workspace {
            arena: vec![0.0; arena_len],
            scratch: vec![0.0; scratch_len],
        }
    }
}

/// What every run shares: the planned graph, its steps (kernels with packed weights) and
/// where inputs and outputs live in a workspace's arena.
struct Plan {
    graph: Arc<Graph>,
    steps: Vec<Step>,
    input_slots: Vec<(String, Vec<usize>, usize)>,
    output_slots: Vec<(String, Slot)>,
}

impl Plan {
    /// One run in `ws` on checked inputs (see `Engine::check_inputs`): inputs in, every step
    /// in order (timed into `profile`, each written value shown to `observer` when given),
    /// outputs copied out.
    #[allow(clippy::type_complexity)]
    fn run(
        &self,
        ws: &mut Workspace,
        inputs: &[Tensor],
        mut profile: Option<&mut Vec<Duration>>,
        mut observer: Option<&mut (dyn FnMut(&str, ndarray::ArrayViewD<f32>) + Send)>,
    ) -> Result<Vec<Tensor>, RunError> {
        for (t, (_, _, offset)) in inputs.iter().zip(&self.input_slots) {
            let a = t.as_f32().expect("checked f32");
            let dst = &mut ws.arena[*offset..*offset + a.len()];
            match a.as_slice() {
                Some(s) => dst.copy_from_slice(s),
                None => dst.iter_mut().zip(a.iter()).for_each(|(d, s)| *d = *s),
            }
        }
        let graph = &self.graph;
        let base = ws.arena.as_mut_ptr();
        for (i, s) in self.steps.iter().enumerate() {
            let t0 = profile.as_ref().map(|_| Instant::now());
            // SAFETY: slots come from the memory plan, which keeps a step's outputs
            // disjoint from its inputs and sizes the arena for every slot.
            unsafe { s.run(base, &mut ws.scratch) }.map_err(|source| RunError::Op {
                node: s.name.clone(),
                op: s.op_name.clone(),
                source,
            })?;
            if let (Some(p), Some(t0)) = (profile.as_mut(), t0) {
                p[i] += t0.elapsed();
            }
            if let Some(obs) = observer.as_mut() {
                if matches!(&graph.nodes[i].op, crate::ops::Op::Int8(q) if q.output_is_int8()) {
                    // byte tensors are not observable as f32
                    continue;
                }
                for (slot, &v) in s.outputs.iter().zip(&graph.nodes[i].outputs) {
                    if let Slot::Arena { offset, shape } = slot {
                        let n: usize = shape.iter().product();
                        let view = ndarray::ArrayViewD::from_shape(
                            shape.as_slice(),
                            &ws.arena[*offset..*offset + n],
                        )
                        .expect("slot shape matches its length");
                        obs(&graph.values[v].name, view);
                    }
                }
            }
        }
        Ok(self
            .output_slots
            .iter()
            .map(|(_, s)| match s {
                Slot::Const(c) => (**c).clone(),
                Slot::Arena { offset, shape } => {
                    let n: usize = shape.iter().product();
                    Tensor::from_f32(shape, ws.arena[*offset..*offset + n].to_vec())
                        .expect("shape matches")
                }
            })
            .collect())
    }
}
