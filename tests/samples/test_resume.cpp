// samples/common/resume.h: what a sample's checkpoint records beside the weights, and
// how --resume reads it back and continues the learning-rate schedule.
#include <sys/wait.h>

#include <cstdio>
#include <cstring>
#include <filesystem>

#include "../helpers.h"
#include "samples/common/resume.h"

using namespace weft;
using Catch::Contains;
namespace fs = std::filesystem;

namespace {
// read_resume_point's error for `meta`, or "".
std::string resume_error(const optim::Metadata& meta) {
  try {
    samples::read_resume_point("run.safetensors", meta);
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

// build/samples/<name> beside this test; empty (with a warning) when it or the
// Fashion-MNIST data is missing.
fs::path sample_or_skip(const std::string& name) {
  const fs::path bin = fs::canonical("/proc/self/exe").parent_path().parent_path() / "samples" / name;
  if (fs::exists(bin) && fs::exists(data::kFashionMnistDir)) return bin;
  WARN(name << " or the Fashion-MNIST data is missing; skipped");
  return {};
}
}  // namespace

TEST_CASE("a resumed run follows the schedule its flags ask for, and says when it differs", "[samples][resume]") {
  Tensor p = ones({1}, {.requires_grad = true});
  // The run that saved B: 1 epoch of 10 steps, peak lr 1.
  optim::SGD saved_opt({p}, {.lr = 1.0});
  optim::CosineWarmupLR saved(saved_opt, 1, 10);
  optim::Metadata meta = samples::checkpoint_metadata("train_mlp", 1, saved, 10);
  const samples::ResumePoint rp = samples::read_resume_point("B", meta);
  REQUIRE(rp.epoch == 1);
  REQUIRE(rp.generator_offset);
  REQUIRE(rp.schedule);
  REQUIRE(*rp.schedule == samples::schedule_record(saved, 10));

  SECTION("the same schedule: on at the optimizer's step, silently") {
    optim::SGD opt({p}, {.lr = 1.0});
    optim::CosineWarmupLR mine(opt, 1, 10);
    CHECK(samples::resume_schedule(rp, mine, 10, 10) == "");
    CHECK(mine.last_step() == 10);
  }
  SECTION("--epochs 2: this run's schedule from the start of epoch 2, with a warning") {
    optim::SGD opt({p}, {.lr = 1.0});
    optim::CosineWarmupLR mine(opt, 2, 20);
    const std::string w = samples::resume_schedule(rp, mine, 10, 10);
    CHECK_THAT(w, Contains("warning: B") && Contains("10 steps") && Contains("20 steps") &&
                      Contains("resume with --epochs 1"));
    CHECK(mine.last_step() == 10);
    CHECK(opt.lr() == mine.lr_at(10));
    CHECK(opt.lr() > 0.4);  // mid-cosine: what an uninterrupted 2-epoch run has here
  }
  SECTION("another batch size: the optimizer's step count no longer says where the epoch starts") {
    // 10 steps taken at 10 an epoch; this run takes 5 an epoch for 2 epochs. At step 10
    // its schedule is over: epoch 2 would train at lr 0.
    optim::SGD opt({p}, {.lr = 1.0});
    optim::CosineWarmupLR mine(opt, 0, 10);
    const std::string w = samples::resume_schedule(rp, mine, 10, 5);
    CHECK_THAT(w, Contains("--batch-size") && Contains("10 steps an epoch"));
    CHECK(mine.last_step() == 5);
    CHECK(opt.lr() > 0.4);
  }
  SECTION("another --lr") {
    optim::SGD opt({p}, {.lr = 0.5});
    optim::CosineWarmupLR mine(opt, 1, 10);
    CHECK_THAT(samples::resume_schedule(rp, mine, 10, 10), Contains("--epochs 1 --lr 1"));
  }
  SECTION("a checkpoint that does not record its schedule (older weft): a note, and the old behaviour") {
    for (const char* k : {"steps_per_epoch", "lr_warmup_steps", "lr_total_steps", "lr_peak"}) meta.erase(k);
    const samples::ResumePoint old = samples::read_resume_point("B", meta);
    REQUIRE(!old.schedule);
    optim::SGD opt({p}, {.lr = 1.0});
    optim::CosineWarmupLR mine(opt, 2, 20);
    CHECK_THAT(samples::resume_schedule(old, mine, 10, 10), Contains("does not record"));
    CHECK(mine.last_step() == 10);
  }
}

TEST_CASE("bad resume metadata names the file, the field and the value", "[samples][resume]") {
  // Before, these were bare std::map::at, std::stoi and std::stoull messages.
  CHECK_THAT(resume_error({}), Contains("run.safetensors") && Contains("no 'epoch' field"));
  CHECK_THAT(resume_error({{"epoch", "abc"}}), Contains("run.safetensors") && Contains("'epoch' is 'abc'"));
  CHECK_THAT(resume_error({{"epoch", "-1"}}), Contains("'epoch' is -1"));
  CHECK_THAT(resume_error({{"epoch", "3000000000"}}), Contains("'epoch' is 3000000000"));
  CHECK_THAT(resume_error({{"epoch", "1"}, {"generator_offset", "-5"}}), Contains("'generator_offset' is '-5'"));
  CHECK_THAT(resume_error({{"epoch", "1"}, {"lr_total_steps", "10"}}), Contains("no 'steps_per_epoch' field"));
  const optim::Metadata schedule = {{"epoch", "1"}, {"steps_per_epoch", "10"}, {"lr_total_steps", "10"},
                                    {"lr_warmup_steps", "10"}, {"lr_peak", "0.1"}};
  CHECK_THAT(resume_error(schedule), Contains("'lr_warmup_steps' is 10, outside [0, 9]"));
  optim::Metadata bad_lr = schedule;
  bad_lr["lr_warmup_steps"] = "1", bad_lr["lr_peak"] = "inf";
  CHECK_THAT(resume_error(bad_lr), Contains("'lr_peak' is 'inf'"));
  bad_lr["lr_peak"] = "0.1";
  CHECK(resume_error(bad_lr) == "");
}

TEST_CASE("a bad loss scale in a checkpoint names the file and the field", "[samples][resume]") {
  optim::GradScaler scaler;
  for (const char* bad : {"-1", "0", "inf", "nan"}) {
    INFO(bad);
    CHECK_THROWS_WITH(samples::load_scaler("run.safetensors", {{"grad_scale", bad}, {"grad_scale_growth_tracker", "0"}}, scaler),
                      Contains("run.safetensors: metadata field 'grad_scale'"));
  }
  CHECK_THROWS_WITH(samples::load_scaler("run.safetensors", {{"grad_scale", "8"}, {"grad_scale_growth_tracker", "-2"}}, scaler),
                    Contains("run.safetensors: metadata field 'grad_scale_growth_tracker'"));
  samples::load_scaler("run.safetensors", {{"grad_scale", "8"}, {"grad_scale_growth_tracker", "3"}}, scaler);
  CHECK(scaler.get_scale() == 8.0);
  CHECK(scaler.growth_tracker() == 3);
}

TEST_CASE("train_mlp --resume with a longer --epochs warns and trains on; bad metadata stops it",
          "[samples][resume][slow]") {
  const fs::path bin = sample_or_skip("train_mlp");
  if (bin.empty()) return;
  test::TempDir dir;
  auto run = [&](const std::string& args) {
    return test::run_program(bin.string(), "--limit 256 --threads 2 " + args);
  };
  const std::string b = dir.file("B.safetensors");
  const auto first = run("--epochs 1 --checkpoint " + b);
  INFO(first.second);
  REQUIRE(first.first == 0);
  const auto second = run("--epochs 2 --resume " + b);
  INFO(second.second);
  REQUIRE(second.first == 0);
  CHECK_THAT(second.second, Contains("warning: " + b) && Contains("--epochs 1") && Contains("epoch 2: test_accuracy"));

  nn::SafeTensors f = nn::load_safetensors(b);
  f.metadata["epoch"] = "abc";
  nn::save_safetensors(dir.file("bad.safetensors"), f.tensors, f.metadata);
  const auto bad = run("--epochs 2 --resume " + dir.file("bad.safetensors"));
  INFO(bad.second);
  CHECK(bad.first == 1);
  CHECK_THAT(bad.second, Contains("bad.safetensors: metadata field 'epoch' is 'abc'"));
}

TEST_CASE("train_mlp --precision fp16 saves its loss scale and resumes with it", "[samples][resume][slow]") {
  const fs::path bin = sample_or_skip("train_mlp");
  if (bin.empty()) return;
  test::TempDir dir;
  const std::string a = dir.file("A.safetensors");
  const auto first = test::run_program(bin.string(), "--limit 256 --threads 2 --precision fp16 --epochs 1 --checkpoint " + a);
  INFO(first.second);
  REQUIRE(first.first == 0);
  CHECK_THAT(first.second, Contains("precision float16") && Contains("loss_scale="));
  nn::SafeTensors f = nn::load_safetensors(a);
  REQUIRE(f.metadata.count("grad_scale") == 1);
  // A scale that could not be the default shows that the resumed run reads it.
  f.metadata["grad_scale"] = "1024";
  f.metadata["grad_scale_growth_tracker"] = "0";
  nn::save_safetensors(dir.file("B.safetensors"), f.tensors, f.metadata);
  const auto second = test::run_program(bin.string(), "--limit 256 --threads 2 --precision fp16 --epochs 2 --resume " +
                                                          dir.file("B.safetensors"));
  INFO(second.second);
  REQUIRE(second.first == 0);
  CHECK_THAT(second.second, Contains("epoch 2: test_accuracy") && Contains("loss_scale=1024 "));
}

TEST_CASE("train_ddp --precision fp16 saves its loss scale and resumes with it", "[samples][resume][slow]") {
  const fs::path bin = sample_or_skip("train_ddp");
  if (bin.empty()) return;
  test::TempDir dir;
  const std::string args = "--model mlp --replicas 2 --limit 256 --batch-size 64 --precision fp16 ";
  const std::string a = dir.file("A.safetensors");
  const auto first = test::run_program(bin.string(), args + "--epochs 1 --checkpoint " + a);
  INFO(first.second);
  REQUIRE(first.first == 0);
  CHECK_THAT(first.second, Contains("loss_scale="));
  nn::SafeTensors f = nn::load_safetensors(a);
  REQUIRE(f.metadata.count("grad_scale") == 1);
  f.metadata["grad_scale"] = "1024";  // not a scale the run could reach by itself in 4 steps
  f.metadata["grad_scale_growth_tracker"] = "0";
  nn::save_safetensors(dir.file("B.safetensors"), f.tensors, f.metadata);
  const auto second = test::run_program(bin.string(), args + "--epochs 2 --resume " + dir.file("B.safetensors"));
  INFO(second.second);
  REQUIRE(second.first == 0);
  CHECK_THAT(second.second, Contains("epoch 2: test_accuracy") && Contains("loss_scale=1024 "));
}

TEST_CASE("train_ddp --algorithm ps --precision fp16 saves every worker's loss scale and each resumes its own",
          "[samples][resume][slow]") {
  const fs::path bin = sample_or_skip("train_ddp");
  if (bin.empty()) return;
  test::TempDir dir;
  const std::string args = "--model mlp --replicas 2 --limit 256 --batch-size 64 --algorithm ps --precision fp16 ";
  const std::string a = dir.file("A.safetensors");
  const auto first = test::run_program(bin.string(), args + "--epochs 1 --checkpoint " + a);
  INFO(first.second);
  REQUIRE(first.first == 0);
  nn::SafeTensors f = nn::load_safetensors(a);
  for (const char* field : {"grad_scale.rank0", "grad_scale.rank1", "grad_scale_growth_tracker.rank1"})
    CHECK(f.metadata.count(field) == 1);
  f.metadata["grad_scale.rank0"] = "1024";  // not a scale 2 steps could reach
  nn::save_safetensors(dir.file("B.safetensors"), f.tensors, f.metadata);
  const auto second = test::run_program(bin.string(), args + "--epochs 2 --resume " + dir.file("B.safetensors"));
  INFO(second.second);
  REQUIRE(second.first == 0);
  CHECK_THAT(second.second, Contains("epoch 2: test_accuracy") && Contains("loss_scale(rank 0)=1024 "));
  f.metadata["grad_scale.rank1"] = "-1";  // rank 1 reads its own field, and refuses this one
  nn::save_safetensors(dir.file("C.safetensors"), f.tensors, f.metadata);
  const auto third = test::run_program(bin.string(), args + "--epochs 2 --resume " + dir.file("C.safetensors"));
  INFO(third.second);
  CHECK(third.first != 0);
  CHECK_THAT(third.second, Contains("metadata field 'grad_scale.rank1' is '-1', not a positive finite loss scale"));
}

TEST_CASE("train_ddp: a comm hook's memory comes back only to the same hook, world size and buckets",
          "[samples][resume][slow]") {
  const fs::path bin = sample_or_skip("train_ddp");
  if (bin.empty()) return;
  test::TempDir dir;
  const std::string args = "--model mlp --limit 256 --batch-size 64 --epochs 2 ";
  const std::string a = dir.file("A.safetensors");
  const auto first =
      test::run_program(bin.string(), args + "--replicas 2 --comm-hook powersgd:2 --stop-after-epoch 1 --checkpoint " + a);
  INFO(first.second);
  REQUIRE(first.first == 0);
  struct Case {
    std::string flags, note;  // note: "" when the memory is taken back
  };
  const std::vector<Case> cases = {
      {"--replicas 2 --comm-hook powersgd:2", ""},
      {"--replicas 2 --comm-hook powersgd:2 --bucket-mb 0.5", "this hook's memory (its residuals) starts at zero"},
      {"--replicas 2 --comm-hook topk:0.1", "this hook's memory (its residuals) starts at zero"},
      {"--replicas 3 --comm-hook powersgd:2", "this hook's memory (its residuals) starts at zero"},
      {"--replicas 2 --comm-hook none", "the saved residuals go unused"},
  };
  for (const Case& k : cases) {
    const auto run = test::run_program(bin.string(), args + k.flags + " --resume " + a);
    INFO(k.flags << "\n" << run.second);
    CHECK(run.first == 0);
    CHECK_THAT(run.second, Contains("epoch 2: test_accuracy"));
    if (k.note.empty()) CHECK_THAT(run.second, !Contains("note:"));
    else CHECK_THAT(run.second, Contains("note: " + a + " was saved with comm hook powersgd:2") && Contains(k.note));
  }
}

TEST_CASE("train_ddp --algorithm ps checkpoints the server's optimizer and resumes it", "[samples][resume][slow]") {
  const fs::path bin = sample_or_skip("train_ddp");
  if (bin.empty()) return;
  test::TempDir dir;
  // 2 workers at staleness 0, 256 samples: 1 clock = 1 server step of batch 2 x 64.
  const std::string args = "--model mlp --replicas 2 --limit 256 --batch-size 64 --algorithm ps --staleness 0 ";
  const std::string a = dir.file("A.safetensors"), b = dir.file("B.safetensors");
  const auto first = test::run_program(bin.string(), args + "--epochs 1 --checkpoint " + a);
  INFO(first.second);
  REQUIRE(first.first == 0);
  const nn::SafeTensors fa = nn::load_safetensors(a);
  CHECK(fa.metadata.at("algorithm") == "ps");
  const Tensor* step_a = fa.find("optim.step");
  REQUIRE(step_a != nullptr);
  CHECK(step_a->item<int64_t>() == 2);  // 128 samples per worker, 2 clocks

  const auto second = test::run_program(bin.string(), args + "--epochs 2 --resume " + a + " --checkpoint " + b);
  INFO(second.second);
  REQUIRE(second.first == 0);
  CHECK_THAT(second.second, Contains("resumed from") && Contains("epoch 2: test_accuracy"));
  // The server's optimizer went on from the saved state: 2 more steps on top of 2.
  const Tensor* step_b = nn::load_safetensors(b).find("optim.step");
  REQUIRE(step_b != nullptr);
  CHECK(step_b->item<int64_t>() == 4);
  // Its optimizer counts the server's steps, not DDP's: DDP refuses to resume it.
  const auto as_ddp = test::run_program(bin.string(), "--model mlp --replicas 2 --limit 256 --epochs 2 --resume " + a);
  INFO(as_ddp.second);
  CHECK(as_ddp.first != 0);
  CHECK_THAT(as_ddp.second, Contains("saved by train_ddp --algorithm ps"));
}

TEST_CASE("train_pruned --resume keeps the masks and the schedule; other pruning flags and lottery are refused",
          "[samples][resume][slow]") {
  const fs::path bin = sample_or_skip("train_pruned");
  if (bin.empty()) return;
  test::TempDir dir;
  const std::string a = dir.file("A.safetensors");
  auto run = [&](const std::string& args) {
    return test::run_program(bin.string(), "--limit 512 --threads 2 --schedule rigl " + args);
  };
  auto last_line = [](const std::string& out) {
    const size_t end = out.find_last_not_of('\n');
    return out.substr(out.rfind('\n', end) + 1, end - out.rfind('\n', end));
  };
  const auto first = run("--sparsity 0.8 --epochs 1 --checkpoint " + a);
  INFO(first.second);
  REQUIRE(first.first == 0);
  const nn::SafeTensors f = nn::load_safetensors(a);
  CHECK(f.metadata.at("sample") == "train_pruned");
  CHECK(f.metadata.count("dynamic_sparse_generator_offset") == 1);

  // Resumed at its end: nothing to train, the same model, the same last line.
  const auto same = run("--sparsity 0.8 --epochs 1 --resume " + a);
  INFO(same.second);
  REQUIRE(same.first == 0);
  CHECK(last_line(same.second) == last_line(first.second));
  CHECK_THAT(last_line(first.second), Contains("sparsity=0.8000"));

  // Resumed with one more epoch: trains it on the loaded masks, the sparsity held.
  const auto more = run("--sparsity 0.8 --epochs 2 --resume " + a);
  INFO(more.second);
  REQUIRE(more.first == 0);
  CHECK_THAT(more.second, Contains("resumed from " + a + " at epoch 1") && Contains("epoch 2: test_accuracy"));
  CHECK_THAT(last_line(more.second), Contains("sparsity=0.8000"));

  const auto other = run("--epochs 2 --sparsity 0.5 --resume " + a);
  INFO(other.second);
  CHECK(other.first == 1);
  CHECK_THAT(other.second, Contains(a + ": saved with pruning flags") && Contains("sparsity=0.8 ") &&
                               Contains("sparsity=0.5 "));
  const auto lottery = test::run_program(bin.string(), "--limit 512 --schedule lottery --resume " + a);
  INFO(lottery.second);
  CHECK(lottery.first == 1);
  CHECK_THAT(lottery.second, Contains("--schedule lottery does not resume"));
}

namespace {
// Whether two safetensors files hold the same tensors, name for name and byte for byte.
bool same_tensors(const std::string& a, const std::string& b) {
  const nn::SafeTensors x = nn::load_safetensors(a), y = nn::load_safetensors(b);
  if (x.tensors.size() != y.tensors.size()) return false;
  for (const auto& [name, t] : x.tensors) {
    const Tensor* u = y.find(name);
    INFO(name);
    if (!u || u->shape() != t.shape() || u->dtype() != t.dtype()) return false;
    const Tensor tc = t.contiguous(), uc = u->contiguous();
    if (std::memcmp(tc.raw_data(), uc.raw_data(), size_t(t.numel()) * element_size(t.dtype())) != 0) return false;
  }
  return true;
}
// "test_accuracy=..." of a run's last line (without the throughput that follows it).
std::string final_accuracy(const std::string& out) {
  const size_t at = out.rfind("test_accuracy=");
  return at == std::string::npos ? "(none)" : out.substr(at, out.find(' ', at) - at);
}
}  // namespace

TEST_CASE("--stop-after-epoch then --resume ends bit for bit where an uninterrupted run ends",
          "[samples][resume][slow]") {
  struct Case {
    std::string sample, args;
  };
  // Two epochs each; the GEMM library fixed (weft otherwise picks each shape's fastest by
  // timing it, and two libraries round differently).
  const std::vector<Case> cases = {
      {"train_mlp", "--limit 512 --threads 2"},
      {"train_pruned", "--limit 1024 --threads 2 --schedule set --sparsity 0.8 --prune-interval 2"},
      {"train_pruned", "--limit 1024 --threads 2 --schedule gradual --sparsity 0.8 --prune-interval 2"},
      {"train_ddp", "--model mlp --replicas 2 --limit 1024 --precision fp16"},
      {"train_ddp", "--model mlp --replicas 2 --limit 1024 --algorithm ps --staleness 0"},
      {"train_ddp", "--model mlp --replicas 2 --limit 1024 --algorithm ps --staleness 0 --precision fp16"},
      {"train_ddp", "--model mlp --replicas 2 --limit 1024 --comm-hook powersgd:2"},  // every rank's residuals
      {"train_ddp", "--model mlp --replicas 2 --limit 1024 --comm-hook topk:0.05"},
      {"train_pipeline", "--limit 512 --stages 2"},
      {"train_pipeline", "--limit 512 --stages 2 --precision fp16"},
  };
  for (const Case& k : cases) {
    DYNAMIC_SECTION(k.sample << " " << k.args) {
      const fs::path bin = sample_or_skip(k.sample);
      if (bin.empty()) continue;
      test::TempDir dir;
      const std::string u = dir.file("U.safetensors"), s = dir.file("S.safetensors"), r = dir.file("R.safetensors");
      auto run = [&](const std::string& more) {
        return test::run_program("env WEFT_GEMM=eigen " + bin.string(), k.args + " --epochs 2 " + more);
      };
      const auto whole = run("--checkpoint " + u);
      INFO(whole.second);
      REQUIRE(whole.first == 0);
      const auto first = run("--stop-after-epoch 1 --checkpoint " + s);
      INFO(first.second);
      REQUIRE(first.first == 0);
      CHECK_THAT(first.second, Contains("stopped after epoch 1 of 2"));
      const auto rest = run("--resume " + s + " --checkpoint " + r);
      INFO(rest.second);
      REQUIRE(rest.first == 0);
      CHECK_THAT(rest.second, !Contains("was saved on a learning-rate schedule"));  // the saved one is this run's
      CHECK(final_accuracy(rest.second) == final_accuracy(whole.second));
      CHECK(same_tensors(u, r));
    }
  }
}
