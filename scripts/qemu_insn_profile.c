/* qemu-user plugin: executed guest instructions per translation block, for a per-function
 * profile of Arm builds (scripts/arm_insn_profile.sh maps the blocks to symbols). The total
 * equals ../shared/tools/qemu_insn_count.c's count; this one also says where it went.
 * Build: gcc -O2 -shared -fPIC -o libinsnprofile.so scripts/qemu_insn_profile.c
 * Use:   qemu-aarch64 -plugin ./libinsnprofile.so,out=FILE PROGRAM ...
 *        FILE gets one line per block start address: "<hex vaddr> <instructions executed>".
 * Written against qemu's plugin API version 1 (Debian bookworm's qemu-user 7.2). */
#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef uint64_t qemu_plugin_id_t;
typedef struct {
    const char *target_name;
    struct { int min; int cur; } version;
    bool system_emulation;
    union { struct { int smp_vcpus; int max_vcpus; } system; };
} qemu_info_t;
struct qemu_plugin_tb;
enum qemu_plugin_op { QEMU_PLUGIN_INLINE_ADD_U64 };
typedef void (*tb_trans_cb_t)(qemu_plugin_id_t, struct qemu_plugin_tb *);
typedef void (*udata_cb_t)(qemu_plugin_id_t, void *);

void qemu_plugin_register_vcpu_tb_trans_cb(qemu_plugin_id_t id, tb_trans_cb_t cb);
void qemu_plugin_register_vcpu_tb_exec_inline(struct qemu_plugin_tb *tb, enum qemu_plugin_op op, void *ptr, uint64_t imm);
size_t qemu_plugin_tb_n_insns(const struct qemu_plugin_tb *tb);
uint64_t qemu_plugin_tb_vaddr(const struct qemu_plugin_tb *tb);
void qemu_plugin_register_atexit_cb(qemu_plugin_id_t id, udata_cb_t cb, void *userdata);

__attribute__((visibility("default"))) int qemu_plugin_version = 1;

/* One record per translation (a block translated twice gets two records; summed at exit).
 * The executed count is instructions: the inline add adds the block's length per execution. */
struct block { uint64_t vaddr; uint64_t executed; };
static struct block **blocks;
static size_t n_blocks, cap_blocks;
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static char out_path[4096] = "";

static void on_translate(qemu_plugin_id_t id, struct qemu_plugin_tb *tb) {
    (void)id;
    struct block *b = calloc(1, sizeof *b);
    if (!b) return;
    b->vaddr = qemu_plugin_tb_vaddr(tb);
    pthread_mutex_lock(&lock);
    if (n_blocks == cap_blocks) {
        size_t cap = cap_blocks ? 2 * cap_blocks : 4096;
        struct block **grown = realloc(blocks, cap * sizeof *grown);
        if (!grown) { pthread_mutex_unlock(&lock); free(b); return; }
        blocks = grown;
        cap_blocks = cap;
    }
    blocks[n_blocks++] = b;
    pthread_mutex_unlock(&lock);
    qemu_plugin_register_vcpu_tb_exec_inline(tb, QEMU_PLUGIN_INLINE_ADD_U64, &b->executed, qemu_plugin_tb_n_insns(tb));
}

static int by_vaddr(const void *a, const void *b) {
    uint64_t x = (*(struct block *const *)a)->vaddr, y = (*(struct block *const *)b)->vaddr;
    return x < y ? -1 : x > y;
}

static void at_exit(qemu_plugin_id_t id, void *unused) {
    (void)id; (void)unused;
    FILE *f = out_path[0] ? fopen(out_path, "w") : stderr;
    if (!f) { fprintf(stderr, "qemu_insn_profile: cannot write %s\n", out_path); return; }
    qsort(blocks, n_blocks, sizeof *blocks, by_vaddr);
    uint64_t total = 0;
    for (size_t i = 0; i < n_blocks;) {
        uint64_t v = blocks[i]->vaddr, sum = 0;
        for (; i < n_blocks && blocks[i]->vaddr == v; i++) sum += blocks[i]->executed;
        if (sum) fprintf(f, "%llx %llu\n", (unsigned long long)v, (unsigned long long)sum);
        total += sum;
    }
    if (f != stderr) fclose(f);
    fprintf(stderr, "guest instructions: %llu\n", (unsigned long long)total);
}

__attribute__((visibility("default"))) int qemu_plugin_install(qemu_plugin_id_t id, const qemu_info_t *info, int argc, char **argv) {
    (void)info;
    for (int i = 0; i < argc; i++)
        if (strncmp(argv[i], "out=", 4) == 0) snprintf(out_path, sizeof out_path, "%s", argv[i] + 4);
    qemu_plugin_register_vcpu_tb_trans_cb(id, on_translate);
    qemu_plugin_register_atexit_cb(id, at_exit, NULL);
    return 0;
}
