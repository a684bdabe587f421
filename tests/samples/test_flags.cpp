// The samples' flags (samples/common/flags.h): every bad value stops the run while the
// command line is parsed, with an error that names the flag and the value. The common
// flags are parsed here, in process; each sample's own flags by running the sample.
#include <sys/wait.h>

#include <cstdio>
#include <filesystem>

#include "../helpers.h"
#include "samples/common/flags.h"
#include "samples/common/trainer.h"

using namespace weft;
namespace fs = std::filesystem;

namespace {

// The common flags and --timeout, parsed from `args`.
struct Parsed {
  samples::Config c;
  double timeout = 300;
  std::string error;  // CLI11's message, "" when the line parsed
};
Parsed parse(const std::string& args) {
  Parsed p;
  p.c.r = samples::mlp_recipe();
  CLI::App app{"test"};
  samples::add_flags(app, p.c);
  samples::add_timeout_flag(app, p.timeout);
  try {
    app.parse(args, /*program_name_included=*/false);
  } catch (const CLI::ParseError& e) {
    p.error = e.what();
  }
  return p;
}

// build/samples/<name>, beside build/tests/ where this test runs.
fs::path sample_path(const std::string& name) {
  return fs::canonical("/proc/self/exe").parent_path().parent_path() / "samples" / name;
}

// Runs a sample (bounded: 120 s, and a small run should a check be missing); its exit
// status and its output, stdout and stderr together.
std::pair<int, std::string> run_sample(const std::string& name, const std::string& args) {
  return test::run_program(sample_path(name).string(), args, 120);
}

}  // namespace

TEST_CASE("the common flags refuse bad values, naming the flag and the value", "[samples][flags]") {
  struct Case {
    std::string args, flag, value;
  };
  const std::vector<Case> cases = {
      {"--threads -2", "--threads", "-2"},  // used to run with the default
      {"--limit -7", "--limit", "-7"},      // likewise
      {"--epochs 0", "--epochs", "'0'"},    // used to blame CosineWarmupLR
      {"--epochs 2.5", "--epochs", "2.5"},
      {"--epochs 99999999999", "--epochs", "99999999999"},
      {"--lr inf", "--lr", "inf"},  // used to report -nan
      {"--lr -0.1", "--lr", "-0.1"},
      {"--weight-decay nan", "--weight-decay", "nan"},  // used to blame eps
      {"--label-smoothing 1.5", "--label-smoothing", "1.5"},
      {"--batch-size 0", "--batch-size", "'0'"},
      {"--seed -1", "--seed", "-1"},
      {"--optimizer lion", "--optimizer", "lion"},
      {"--device gpu:0", "--device", "gpu:0"},
      {"--data /no/such/dir", "--data", "/no/such/dir"},
      {"--resume /no/such/run.safetensors", "--resume", "/no/such/run.safetensors"},
      {"--checkpoint /no/such/dir/run.safetensors", "--checkpoint", "/no/such/dir/run.safetensors"},
      {"--timeout 0", "--timeout", "'0'"},
      {"--timeout -5", "--timeout", "-5"},
      {"--timeout inf", "--timeout", "inf"},
      {"--timeout nan", "--timeout", "nan"},
      {"--timeout 1e9", "--timeout", "1e9"},
      {"--precision fp8", "--precision", "fp8"},
      {"--precision bfloat16", "--precision", "bfloat16"},  // the short names only: fp32, bf16, fp16
  };
  for (const Case& k : cases) {
    INFO(k.args);
    const std::string error = parse(k.args).error;
    CHECK_THAT(error, Catch::Contains(k.flag) && Catch::Contains(k.value));
  }
}

TEST_CASE("the common flags take good values", "[samples][flags]") {
  test::TempDir dir;
  const Parsed p = parse("--threads 2 --limit 100 --epochs 1 --lr 0.01 --weight-decay 0 --label-smoothing 0 --seed 7 "
                         "--device cpu:1 --optimizer sgd --timeout 2.5 --checkpoint " +
                         dir.file("run.safetensors"));
  REQUIRE(p.error == "");
  CHECK(p.c.threads == 2);
  CHECK(p.c.limit == 100);
  CHECK(p.c.r.epochs == 1);
  CHECK(p.c.r.lr == 0.01);
  CHECK(p.c.r.optimizer == "sgd");
  CHECK(p.c.precision == kFloat32);  // the default
  CHECK(parse("--precision bf16").c.precision == kBFloat16);
  CHECK(parse("--precision fp16").c.precision == kFloat16);
  CHECK(p.timeout == 2.5);
  CHECK(dir.listing().empty());  // the --checkpoint check leaves nothing behind
  CHECK(samples::collective_timeout(2.5) == parallel::Timeout(2500));
  CHECK(samples::collective_timeout(1e-4) == parallel::Timeout(1));  // rounded up, never 0
  CHECK(samples::collective_timeout(samples::kMaxTimeoutSeconds) == parallel::Timeout(1'000'000'000));
}

TEST_CASE("each sample refuses bad values of its own flags, and documents --timeout", "[samples][flags]") {
  if (!fs::exists(sample_path("train_ddp"))) {
    WARN("the sample programs are not built beside the tests; skipped");
    return;
  }
  struct Case {
    std::string sample, args, flag, value;
  };
  const std::vector<Case> cases = {
      {"train_mlp", "--threads -2", "--threads", "-2"},
      {"train_ddp", "--replicas 0", "--replicas", "'0'"},
      {"train_ddp", "--timeout 0", "--timeout", "'0'"},
      {"train_ddp", "--model deep-mlp", "--model", "deep-mlp"},  // used to train an MLP
      {"train_ddp", "--bucket-mb nan", "--bucket-mb", "nan"},
      {"train_ddp", "--rank-threads -1", "--rank-threads", "-1"},
      {"train_ddp", "--backend gloo", "--backend", "gloo"},
      {"train_ddp", "--comm-hook powersgd:0", "--comm-hook", "powersgd:0"},
      {"train_charlm", "--steps 12", "--warmup 30", "--steps 12"},
      {"train_charlm", "--stages 2 --balance fast", "--balance", "manual:i,j"},
      {"train_ddp", "--comm-hook topk:2", "--comm-hook", "topk:2"},
      {"train_ddp", "--comm-hook bf16 --deterministic", "--comm-hook bf16", "--deterministic"},
      {"train_ddp", "--algorithm gossip", "--algorithm", "gossip"},
      {"train_ddp", "--staleness 2", "--staleness", "--algorithm ps"},
      {"train_ddp", "--staleness -2", "--staleness", "-2"},
      {"train_ddp", "--algorithm ps --comm-hook bf16", "--comm-hook", "--algorithm ps"},
      {"train_ddp", "--algorithm ps --bucket-mb 4", "--bucket-mb", "--algorithm ps"},
      {"train_pipeline", "--stages 0", "--stages", "'0'"},
      {"train_pipeline", "--microbatches 0", "--microbatches", "'0'"},
      {"train_pipeline", "--timeout -1", "--timeout", "-1"},
      {"train_pipeline", "--balance bogus", "--balance", "bogus"},
      {"train_pipeline", "--schedule zb", "--schedule", "zb"},
      {"train_pipeline", "--trace-steps -3", "--trace-steps", "-3"},
      {"train_pipeline", "--virtual 0", "--virtual", "'0'"},
      {"train_pipeline", "--replicas 0", "--replicas", "'0'"},
      {"train_pipeline", "--virtual 2 --schedule 1f1b", "--virtual", "--schedule interleaved"},
      {"train_pipeline", "--backend nccl --virtual 2 --schedule interleaved", "--backend nccl", "--virtual 1"},
      {"train_pipeline", "--devices cpu:0,cpu:1 --replicas 2", "--devices", "one replica"},
      {"train_pipeline", "--devices cpu:0 --stages 2", "--devices", "1 devices for 2 stages"},
      {"train_pruned", "--sparsity 1.5", "--sparsity", "1.5"},
      {"train_pruned", "--nm 5:4", "--nm", "5:4"},
      {"train_pruned", "--rounds 0", "--rounds", "'0'"},
      {"train_pruned", "--prune-interval 0", "--prune-interval", "'0'"},
      {"train_pruned", "--drop-fraction -0.1", "--drop-fraction", "-0.1"},
      {"train_pruned", "--prune-at 2", "--prune-at", "'2'"},
      {"train_pruned", "--method foo", "--method", "foo"},
      {"train_mlp", "--stop-after-epoch 0", "--stop-after-epoch", "'0'"},
      {"train_pruned", "--schedule lottery --stop-after-epoch 1", "--stop-after-epoch", "lottery"},
      {"ring_allreduce", "--timeout nan", "--timeout", "nan"},
      {"ring_allreduce", "--ranks 0", "--ranks", "'0'"},
  };
  for (const Case& k : cases) {
    INFO(k.sample << " " << k.args);
    // --limit and --epochs keep the run short should a check be missing (train_charlm
    // checks before it reads its corpus).
    const std::string extra = k.sample == "ring_allreduce" || k.sample == "train_charlm" ? "" : " --limit 64 --epochs 1";
    const auto run = run_sample(k.sample, k.args + extra);
    INFO(run.second);
    CHECK(run.first != 0);
    CHECK_THAT(run.second, Catch::Contains(k.flag) && Catch::Contains(k.value));
  }
  for (const std::string sample : {"train_ddp", "train_pipeline", "ring_allreduce"}) {
    INFO(sample);
    const auto run = run_sample(sample, "--help");
    CHECK(run.first == 0);
    CHECK_THAT(run.second, Catch::Contains("--timeout"));
  }
}
