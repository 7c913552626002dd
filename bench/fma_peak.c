/* FMA throughput micro-benchmark: the machine's float32 peak for section 1 of run_benchmark.py.
 *
 * Each OpenMP thread runs 12 independent chains of 256-bit fused multiply-adds (more chains than
 * FMA latency x FMA ports on current x86 cores, so the ports never wait for a result) on registers
 * only: no memory traffic, the upper bound no convolution can exceed.
 *
 * Build: cc -O2 -mavx2 -mfma -fopenmp fma_peak.c -o fma_peak
 * Run:   ./fma_peak THREADS SECONDS   -> prints "threads gflops_best gflops_median rounds"
 */
#include <immintrin.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>

#define CHAINS 12
#define LANES 8
#define INNER 1000000L

static int compare(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

int main(int argc, char **argv) {
    int threads = argc > 1 ? atoi(argv[1]) : 1;
    double seconds = argc > 2 ? atof(argv[2]) : 1.0;
    double rates[1000];
    int rounds = 0;
    float sink = 0.0f;
    double end = omp_get_wtime() + seconds;
    omp_set_num_threads(threads);
    while (rounds < 1000 && (rounds < 3 || omp_get_wtime() < end)) {
        double start = omp_get_wtime();
#pragma omp parallel reduction(+ : sink)
        {
            __m256 acc[CHAINS];
            const __m256 a = _mm256_set1_ps(0.999999f), b = _mm256_set1_ps(1e-7f);
            for (int c = 0; c < CHAINS; c++) acc[c] = _mm256_set1_ps((float)c);
            for (long i = 0; i < INNER; i++)
#pragma GCC unroll 12
                for (int c = 0; c < CHAINS; c++) acc[c] = _mm256_fmadd_ps(acc[c], a, b);
            float out[LANES];
            for (int c = 1; c < CHAINS; c++) acc[0] = _mm256_add_ps(acc[0], acc[c]);
            _mm256_storeu_ps(out, acc[0]);
            sink += out[0];  /* keeps the chains alive through the optimiser */
        }
        double elapsed = omp_get_wtime() - start;
        rates[rounds++] = (double)threads * INNER * CHAINS * LANES * 2 / elapsed / 1e9;
    }
    qsort(rates, rounds, sizeof(double), compare);
    printf("%d %.2f %.2f %d %g\n", threads, rates[rounds - 1], rates[rounds / 2], rounds, (double)sink);
    return 0;
}
